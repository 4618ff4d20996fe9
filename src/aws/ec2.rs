//! EC2: AMIs and launch template versions.

use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{ImageState, RequestLaunchTemplateData};

use super::error::{Endpoint, missing};
use crate::core::cloud::{CloudError, CloudErrorKind, CloudResult, LaunchTemplateVersion};
use crate::core::fleet::LaunchTemplateRef;
use crate::core::names::ImageId;

const DESCRIBE_IMAGES: &str = "DescribeImages";
const DESCRIBE_LAUNCH_TEMPLATES: &str = "DescribeLaunchTemplates";
const DESCRIBE_LAUNCH_TEMPLATE_VERSIONS: &str = "DescribeLaunchTemplateVersions";
const CREATE_LAUNCH_TEMPLATE_VERSION: &str = "CreateLaunchTemplateVersion";

/// The most versions DescribeLaunchTemplateVersions returns per page.
const MAX_RESULTS: i32 = 200;

pub(crate) struct Ec2 {
    client: Client,
    endpoint: Endpoint,
}

impl Ec2 {
    pub(crate) fn new(conf: &SdkConfig) -> Ec2 {
        Ec2 {
            client: Client::new(conf),
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
        let out = self
            .client
            .describe_launch_templates()
            .launch_template_names(name)
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        let template = out.launch_templates().first().ok_or_else(|| {
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
    ) -> CloudResult<LaunchTemplateVersion> {
        let op = CREATE_LAUNCH_TEMPLATE_VERSION;
        // The SDK fills in ClientToken once per call, so its own retries cannot add a version.
        let out = self
            .client
            .create_launch_template_version()
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
