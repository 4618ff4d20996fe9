//! EC2: AMIs and launch template versions.

use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    DeleteLaunchTemplateVersionsResponseErrorItem, Filter, ImageState, LaunchTemplate,
    LaunchTemplateErrorCode, LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData,
    ResourceType, Tag, TagSpecification,
};

use super::error::{Endpoint, missing};
use crate::core::cloud::{
    CloudError, CloudErrorKind, CloudResult, LaunchTemplateVersion, LockObject,
};
use crate::core::fleet::LaunchTemplateRef;
use crate::core::lock::NAME_PREFIX;
use crate::core::names::ImageId;

const DESCRIBE_IMAGES: &str = "DescribeImages";
const DESCRIBE_LAUNCH_TEMPLATES: &str = "DescribeLaunchTemplates";
const DESCRIBE_LAUNCH_TEMPLATE_VERSIONS: &str = "DescribeLaunchTemplateVersions";
const CREATE_LAUNCH_TEMPLATE_VERSION: &str = "CreateLaunchTemplateVersion";
const CREATE_LAUNCH_TEMPLATE: &str = "CreateLaunchTemplate";
const DELETE_LAUNCH_TEMPLATE: &str = "DeleteLaunchTemplate";
const DELETE_LAUNCH_TEMPLATE_VERSIONS: &str = "DeleteLaunchTemplateVersions";
const CREATE_TAGS: &str = "CreateTags";

/// The most versions DescribeLaunchTemplateVersions returns per page.
const MAX_RESULTS: i32 = 200;
/// The most templates DescribeLaunchTemplates returns per page.
const MAX_TEMPLATES: i32 = 200;
/// The most versions one DeleteLaunchTemplateVersions call takes.
const VERSIONS_PER_DELETE: usize = 200;

pub(crate) struct Ec2 {
    client: Client,
    endpoint: Endpoint,
}

impl Ec2 {
    pub(crate) fn new(conf: &SdkConfig) -> Ec2 {
        Ec2 {
            // Every call logged at -vv (src/aws/trace.rs).
            client: Client::from_conf(
                aws_sdk_ec2::config::Builder::from(conf)
                    .interceptor(super::trace::CallLog)
                    .build(),
            ),
            endpoint: Endpoint::new(
                "EC2",
                conf.endpoint_url(),
                conf.region().map(|r| r.as_ref()),
            ),
        }
    }

    pub(crate) async fn image_exists(&self, image: &ImageId) -> CloudResult<bool> {
        let out = self
            .client
            .describe_images()
            .image_ids(image.as_str())
            .send()
            .await
            .map_err(self.endpoint.on(DESCRIBE_IMAGES));
        match out {
            // Recently deregistered images are still listed for a while.
            Ok(out) => Ok(out
                .images()
                .iter()
                .any(|i| i.state() != Some(&ImageState::Deregistered))),
            Err(e) if e.kind == CloudErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The id of the launch template called `name`.
    pub(crate) async fn template_id(&self, name: &str) -> CloudResult<String> {
        let op = DESCRIBE_LAUNCH_TEMPLATES;
        let template = self.template_named(name).await?.ok_or_else(|| {
            CloudError::new(
                CloudErrorKind::NotFound,
                op,
                format!("launch template {name:?} not found"),
            )
        })?;
        template
            .launch_template_id()
            .map(str::to_owned)
            .ok_or_else(|| missing(op, "a launch template", "LaunchTemplateId"))
    }

    /// The launch template called `name`, if there is one.
    async fn template_named(&self, name: &str) -> CloudResult<Option<LaunchTemplate>> {
        let out = self
            .client
            .describe_launch_templates()
            .launch_template_names(name)
            .send()
            .await
            .map_err(self.endpoint.on(DESCRIBE_LAUNCH_TEMPLATES));
        match out {
            Ok(out) => Ok(out
                .launch_templates()
                .iter()
                .find(|t| t.launch_template_name() == Some(name))
                .cloned()),
            Err(e) if e.kind == CloudErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn launch_template_version(
        &self,
        template: &LaunchTemplateRef,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        let op = DESCRIBE_LAUNCH_TEMPLATE_VERSIONS;
        let out = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(&template.id)
            .versions(&template.version)
            .send()
            .await
            .map_err(self.endpoint.on(op));
        match out {
            Ok(out) => out
                .launch_template_versions()
                .first()
                .map(|v| version(op, v))
                .transpose(),
            Err(e) if e.kind == CloudErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn find_launch_template_version(
        &self,
        template_id: &str,
        description: &str,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        let op = DESCRIBE_LAUNCH_TEMPLATE_VERSIONS;
        // EC2 cannot filter versions by description, so every version is read.
        let mut pages = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(template_id)
            .max_results(MAX_RESULTS)
            .into_paginator()
            .send();
        let mut newest: Option<LaunchTemplateVersion> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.endpoint.on(op))?;
            for v in page.launch_template_versions() {
                if v.version_description() != Some(description) {
                    continue;
                }
                let found = version(op, v)?;
                if newest.as_ref().is_none_or(|n| n.number < found.number) {
                    newest = Some(found);
                }
            }
        }
        Ok(newest)
    }

    pub(crate) async fn create_launch_template_version(
        &self,
        template_id: &str,
        source_version: u64,
        image: &ImageId,
        description: &str,
        client_token: &str,
    ) -> CloudResult<LaunchTemplateVersion> {
        let op = CREATE_LAUNCH_TEMPLATE_VERSION;
        // The token is derived from the request, so a repeat after a lost answer (by the SDK's
        // retries or by a re-run) returns the version the first one made.
        let out = self
            .client
            .create_launch_template_version()
            .client_token(client_token)
            .launch_template_id(template_id)
            .source_version(source_version.to_string())
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(image.as_str())
                    .build(),
            )
            .version_description(description)
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        let created = out
            .launch_template_version()
            .ok_or_else(|| missing(op, "its answer", "LaunchTemplateVersion"))?;
        version(op, created)
    }
}

/// What `cleanup` reads and deletes: every version of a template, and every lock object.
impl Ec2 {
    pub(crate) async fn launch_template_versions(
        &self,
        template_id: &str,
    ) -> CloudResult<Vec<LaunchTemplateVersion>> {
        let op = DESCRIBE_LAUNCH_TEMPLATE_VERSIONS;
        let mut pages = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(template_id)
            .max_results(MAX_RESULTS)
            .into_paginator()
            .send();
        let mut versions = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.endpoint.on(op))?;
            for v in page.launch_template_versions() {
                versions.push(version(op, v)?);
            }
        }
        Ok(versions)
    }

    /// DeleteLaunchTemplateVersions in calls of at most [`VERSIONS_PER_DELETE`]. EC2 answers a
    /// version it would not delete in the response rather than as an error: one that is gone
    /// (or whose template is) counts as deleted; any other (the default version) is an error,
    /// after every call has been made, naming each version and EC2's code.
    pub(crate) async fn delete_launch_template_versions(
        &self,
        template_id: &str,
        versions: &[u64],
    ) -> CloudResult<()> {
        let op = DELETE_LAUNCH_TEMPLATE_VERSIONS;
        let mut refused = Vec::new();
        for chunk in versions.chunks(VERSIONS_PER_DELETE) {
            let out = self
                .client
                .delete_launch_template_versions()
                .launch_template_id(template_id)
                .set_versions(Some(chunk.iter().map(u64::to_string).collect()))
                .send()
                .await
                .map_err(self.endpoint.on(op));
            match out {
                Ok(out) => refused.extend(
                    out.unsuccessfully_deleted_launch_template_versions()
                        .iter()
                        .filter(|item| !already_gone(item))
                        .cloned(),
                ),
                // The template is gone, and every version with it.
                Err(e) if e.kind == CloudErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        match refusal(op, template_id, &refused) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Every launch template named `greenlight-lock.*`, with its tags: the name filter is
    /// applied by EC2, every page is read, and the prefix is checked again here.
    pub(crate) async fn locks(&self) -> CloudResult<Vec<LockObject>> {
        let op = DESCRIBE_LAUNCH_TEMPLATES;
        let mut pages = self
            .client
            .describe_launch_templates()
            .filters(
                Filter::builder()
                    .name("launch-template-name")
                    .values(format!("{NAME_PREFIX}*"))
                    .build(),
            )
            .max_results(MAX_TEMPLATES)
            .into_paginator()
            .send();
        let mut locks = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.endpoint.on(op))?;
            for template in page.launch_templates() {
                let name = template
                    .launch_template_name()
                    .ok_or_else(|| missing(op, "a launch template", "LaunchTemplateName"))?;
                if !name.starts_with(NAME_PREFIX) {
                    continue;
                }
                let id = template
                    .launch_template_id()
                    .ok_or_else(|| missing(op, "a launch template", "LaunchTemplateId"))?;
                locks.push(LockObject {
                    name: name.to_owned(),
                    id: id.to_owned(),
                    tags: template_tags(template),
                });
            }
        }
        Ok(locks)
    }
}

/// Whether EC2 refused to delete a version because it (or its template) no longer exists.
fn already_gone(item: &DeleteLaunchTemplateVersionsResponseErrorItem) -> bool {
    matches!(
        item.response_error().and_then(|e| e.code()),
        Some(
            LaunchTemplateErrorCode::LaunchTemplateVersionDoesNotExist
                | LaunchTemplateErrorCode::LaunchTemplateIdDoesNotExist
        )
    )
}

/// The error for versions EC2 would not delete, naming each with EC2's code and message.
fn refusal(
    operation: &str,
    template_id: &str,
    refused: &[DeleteLaunchTemplateVersionsResponseErrorItem],
) -> Option<CloudError> {
    let first = refused.first()?;
    let code = |item: &DeleteLaunchTemplateVersionsResponseErrorItem| {
        item.response_error()
            .and_then(|e| e.code())
            .map_or("unknown", |c| c.as_str())
            .to_owned()
    };
    let parts: Vec<String> = refused
        .iter()
        .map(|item| {
            let version = item
                .version_number()
                .map_or_else(|| "?".to_owned(), |n| n.to_string());
            let mut part = format!("version {version} ({}", code(item));
            if let Some(message) = item.response_error().and_then(|e| e.message()) {
                part.push_str(": ");
                part.push_str(message.trim());
            }
            part.push(')');
            part
        })
        .collect();
    Some(
        CloudError::new(
            CloudErrorKind::InvalidRequest,
            operation,
            format!(
                "EC2 did not delete {} of launch template {template_id}",
                parts.join(", ")
            ),
        )
        .with_code(code(first)),
    )
}

fn template_tags(template: &LaunchTemplate) -> BTreeMap<String, String> {
    template
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}

/// The lock: a launch template whose name is unique per service (see `core::lock`). It never
/// launches anything; its template data only tags, so anything launched from it by mistake says
/// what it came from.
impl Ec2 {
    pub(crate) async fn create_lock(
        &self,
        name: &str,
        tags: &[(String, String)],
        client_token: &str,
    ) -> CloudResult<String> {
        let op = CREATE_LAUNCH_TEMPLATE;
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let out = self
            .client
            .create_launch_template()
            .launch_template_name(name)
            .client_token(client_token)
            .version_description("greenlight lock; launches nothing")
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .tag_specifications(
                        LaunchTemplateTagSpecificationRequest::builder()
                            .resource_type(ResourceType::Instance)
                            .tags(
                                Tag::builder()
                                    .key("greenlight:launched-from-lock")
                                    .value(name)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::LaunchTemplate)
                    .set_tags(Some(tags))
                    .build(),
            )
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        out.launch_template()
            .and_then(|t| t.launch_template_id())
            .map(str::to_owned)
            .ok_or_else(|| missing(op, "its answer", "LaunchTemplateId"))
    }

    pub(crate) async fn read_lock(
        &self,
        name: &str,
    ) -> CloudResult<Option<(String, BTreeMap<String, String>)>> {
        let Some(template) = self.template_named(name).await? else {
            return Ok(None);
        };
        let id = template.launch_template_id().ok_or_else(|| {
            missing(
                DESCRIBE_LAUNCH_TEMPLATES,
                "a launch template",
                "LaunchTemplateId",
            )
        })?;
        Ok(Some((id.to_owned(), template_tags(&template))))
    }

    pub(crate) async fn tag_lock(&self, id: &str, tags: &[(String, String)]) -> CloudResult<()> {
        self.client
            .create_tags()
            .resources(id)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map(drop)
            .map_err(self.endpoint.on(CREATE_TAGS))
    }

    pub(crate) async fn delete_lock(&self, id: &str) -> CloudResult<()> {
        match self
            .client
            .delete_launch_template()
            .launch_template_id(id)
            .send()
            .await
            .map_err(self.endpoint.on(DELETE_LAUNCH_TEMPLATE))
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == CloudErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn version(
    operation: &str,
    v: &aws_sdk_ec2::types::LaunchTemplateVersion,
) -> CloudResult<LaunchTemplateVersion> {
    let number = v
        .version_number()
        .ok_or_else(|| missing(operation, "a launch template version", "VersionNumber"))?;
    Ok(LaunchTemplateVersion {
        template_id: v
            .launch_template_id()
            .ok_or_else(|| missing(operation, "a launch template version", "LaunchTemplateId"))?
            .to_owned(),
        number: u64::try_from(number).map_err(|_| {
            CloudError::new(
                CloudErrorKind::Other,
                operation,
                format!("AWS returned launch template version number {number}"),
            )
        })?,
        image_id: v
            .launch_template_data()
            .and_then(|d| d.image_id())
            .map(str::to_owned),
        description: v.version_description().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::ResponseError;

    use super::*;

    fn item(
        version: i64,
        code: LaunchTemplateErrorCode,
    ) -> DeleteLaunchTemplateVersionsResponseErrorItem {
        DeleteLaunchTemplateVersionsResponseErrorItem::builder()
            .launch_template_id("lt-1")
            .version_number(version)
            .response_error(
                ResponseError::builder()
                    .code(code)
                    .message("Cannot delete the default version")
                    .build(),
            )
            .build()
    }

    #[test]
    fn versions_already_gone_count_as_deleted() {
        assert!(already_gone(&item(
            3,
            LaunchTemplateErrorCode::LaunchTemplateVersionDoesNotExist
        )));
        assert!(already_gone(&item(
            3,
            LaunchTemplateErrorCode::LaunchTemplateIdDoesNotExist
        )));
        assert!(!already_gone(&item(
            1,
            LaunchTemplateErrorCode::UnexpectedError
        )));
        assert_eq!(refusal("DeleteLaunchTemplateVersions", "lt-1", &[]), None);
    }

    #[test]
    fn refused_versions_are_named_with_their_codes() {
        let err = refusal(
            "DeleteLaunchTemplateVersions",
            "lt-1",
            &[
                item(1, LaunchTemplateErrorCode::UnexpectedError),
                item(4, LaunchTemplateErrorCode::LaunchTemplateIdMalformed),
            ],
        )
        .unwrap();
        assert_eq!(err.kind, CloudErrorKind::InvalidRequest);
        assert_eq!(err.code.as_deref(), Some("unexpectedError"));
        assert_eq!(
            err.message,
            "EC2 did not delete version 1 (unexpectedError: Cannot delete the default \
             version), version 4 (launchTemplateIdMalformed: Cannot delete the default \
             version) of launch template lt-1"
        );
    }
}
