"""Launch template patches: SourceVersion, and UserData in later versions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.responses.launch_templates import LaunchTemplates as LaunchTemplateResponse
from moto.ec2.utils import parse_user_data

from .patching import wrap


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
