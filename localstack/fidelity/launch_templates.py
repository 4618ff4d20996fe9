"""Launch template patches: SourceVersion, UserData in later versions, tags, ClientToken."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
from moto.ec2.responses.launch_templates import LaunchTemplates as LaunchTemplateResponse
from moto.ec2.utils import parse_user_data

from .idempotency import make_idempotent
from .patching import wrap

# The TagSpecifications resource type that tags the template itself (not what it launches).
TEMPLATE_RESOURCE_TYPE = "launch-template"


def patch_launch_templates() -> None:
    # UserData reaches later versions as a plain str (only CreateLaunchTemplate parses it), and
    # moto asserts it is a Base64EncodedString when an ASG launches from that version: HTTP 500.
    def make_create_version(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_version(self: LaunchTemplate, data: dict[str, Any], description: str) -> Any:
            if isinstance(data.get("UserData"), str):
                data = {**data, "UserData": parse_user_data(data["UserData"])}
            return original(self, data, description)

        return create_version

    wrap(LaunchTemplate, "create_version", make_create_version)

    # CreateLaunchTemplateVersion: stock moto ignores SourceVersion, so a version that changes
    # only ImageId loses the instance type, security groups, user data, ... AWS copies the
    # source version and overlays the given LaunchTemplateData (top-level keys replace).
    def make_create_lt_version(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_launch_template_version(self: LaunchTemplateResponse) -> Any:
            source = self._get_param("SourceVersion")
            name, tmpl_id = (
                self._get_param("LaunchTemplateName"),
                self._get_param("LaunchTemplateId"),
            )
            if source is None or not (name or tmpl_id):
                return original(self)
            template = (
                self.ec2_backend.get_launch_template(tmpl_id)
                if tmpl_id
                else self.ec2_backend.get_launch_template_by_name(name)
            )
            base = copy.deepcopy(template.get_version(source).data)
            overlay = self._get_param("LaunchTemplateData", {})
            base.update(overlay)
            # Hand the merged data to the stock implementation: it stays in charge of dry-run,
            # the response shape and CreatedBy.
            original_get_param = self._get_param

            def _get_param(param_name: str, if_none: Any = None) -> Any:
                if param_name == "LaunchTemplateData":
                    return base
                return original_get_param(param_name, if_none)

            self._get_param = _get_param  # type: ignore[method-assign]
            try:
                return original(self)
            finally:
                del self._get_param

        return create_launch_template_version

    wrap(LaunchTemplateResponse, "create_launch_template_version", make_create_lt_version)


def patch_launch_template_tags() -> None:
    # DescribeLaunchTemplates' Tags: stock moto copies the template's tags into an attribute
    # once, at creation, so CreateTags/DeleteTags on the lt-... id never show there (the tag:
    # and tag-key filters already read the live tags, so a filter and the Tags it returns could
    # disagree). AWS reports the tags as they are now. moto assigns the attribute in __init__;
    # with the property that write is a no-op.
    def tags(self: LaunchTemplate) -> list[dict[str, str]]:
        return self.get_tags()

    LaunchTemplate.tags = property(tags, lambda self, value: None)

    # DeleteLaunchTemplate: stock moto leaves the template's tags in EC2's tag store, so
    # DescribeTags keeps listing a template that no longer exists. AWS deletes them with it.
    def make_delete(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_launch_template(self: Any, name: str, tid: str | None) -> LaunchTemplate:
            template = original(self, name, tid)
            self.tags.pop(template.id, None)  # EC2Backend's TagBackend store
            return template

        return delete_launch_template

    wrap(LaunchTemplateBackend, "delete_launch_template", make_delete)

    # CreateLaunchTemplate: stock moto also copies the request's top-level TagSpecifications
    # (the template's own tags) into version 1's LaunchTemplateData.TagSpecifications, where
    # AWS keeps only what LaunchTemplateData itself specified (tags for instances, volumes...,
    # never for `launch-template`). DescribeLaunchTemplateVersions showed them, and a later
    # version built from SourceVersion 1 inherited them.
    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_launch_template(self: LaunchTemplateResponse) -> Any:
            result = original(self)
            template_id = result.result["LaunchTemplate"]["LaunchTemplateId"]
            data = self.ec2_backend.get_launch_template(template_id).versions[0].data
            specs = [
                spec
                for spec in data.get("TagSpecifications", [])
                if spec.get("ResourceType") != TEMPLATE_RESOURCE_TYPE
            ]
            if specs:
                data["TagSpecifications"] = specs
            else:
                data.pop("TagSpecifications", None)
            return result

        return create_launch_template

    wrap(LaunchTemplateResponse, "create_launch_template", make_create)


def patch_client_tokens() -> None:
    # ClientToken: see idempotency.py. Applied last, so a repeated request is answered before
    # any other patch (or moto) runs, and the token is bound to the request as the caller sent
    # it (before SourceVersion is merged in).
    make_idempotent(LaunchTemplateResponse, "create_launch_template", "CreateLaunchTemplate")
    make_idempotent(
        LaunchTemplateResponse, "create_launch_template_version", "CreateLaunchTemplateVersion"
    )
