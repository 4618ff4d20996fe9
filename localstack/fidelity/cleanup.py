"""Launch template patches for what `greenlight cleanup` calls: deleting versions, and paging.

* DeleteLaunchTemplateVersions: stock moto 5.2.5 does not implement it (HTTP 500, "not yet
  implemented"). AWS deletes each version it can, reports each one it cannot in
  UnsuccessfullyDeletedLaunchTemplateVersions (a version that does not exist, the default
  version) instead of failing the request, and takes at most 200 versions a call.
* Version numbers: stock moto stores versions in a list and finds version N at index N-1, and
  numbers a new version len(versions)+1, which only works while nothing is ever deleted. AWS
  finds a version by its number and never reuses a number.
* DescribeLaunchTemplates / DescribeLaunchTemplateVersions: stock moto cuts the answer at
  MaxResults (15 when it is not given) and never returns a NextToken, so a caller that reads
  every page silently misses the rest. AWS pages with NextToken; MaxResults is 1 to 200, and
  without it every result comes back. MinVersion/MaxVersion are version numbers (moto sliced
  the list by index).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidLaunchTemplateVersionNotFound, InvalidParameterValue
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateVersion
from moto.ec2.responses.launch_templates import LaunchTemplates as LaunchTemplateResponse

from .patching import wrap

# AWS: "You can delete up to 200 launch template versions in a single request."
MAX_VERSIONS_PER_DELETE = 200
# DescribeLaunchTemplates and DescribeLaunchTemplateVersions: MaxResults is 1 to 200.
MAX_RESULTS = 200
TOKEN_PREFIX = "greenlight-page-"


def patch_cleanup() -> None:
    patch_version_numbers()
    patch_delete_versions()
    patch_paging()


def patch_version_numbers() -> None:
    def get_version(self: LaunchTemplate, num: Any) -> LaunchTemplateVersion:
        text = str(num).lower()
        if text == "$latest":
            return self.versions[-1]
        if text == "$default":
            return self.default_version()
        try:
            wanted = int(text)
        except ValueError:
            raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=num) from None
        for version in self.versions:
            if version.number == wanted:
                return version
        raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=num)

    get_version.__wrapped__ = LaunchTemplate.get_version  # type: ignore[attr-defined]
    LaunchTemplate.get_version = get_version  # type: ignore[method-assign]

    def default_version(self: LaunchTemplate) -> LaunchTemplateVersion:
        return self.get_version(self.default_version_number)

    default_version.__wrapped__ = LaunchTemplate.default_version  # type: ignore[attr-defined]
    LaunchTemplate.default_version = default_version  # type: ignore[method-assign]

    # Wraps whatever create_version is now (launch_templates.py's UserData fix included): moto
    # numbers the new version len+1; it becomes one past the highest number ever used.
    def make_create_version(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_version(self: LaunchTemplate, data: dict[str, Any], description: str) -> Any:
            version = original(self, data, description)
            earlier = [v.number for v in self.versions if v is not version]
            version.number = max([getattr(self, "_greenlight_highest", 0), *earlier]) + 1
            self._greenlight_highest = version.number
            return version

        return create_version

    wrap(LaunchTemplate, "create_version", make_create_version)


def patch_delete_versions() -> None:
    def delete_launch_template_versions(self: LaunchTemplateResponse) -> ActionResult:
        name = self._get_param("LaunchTemplateName")
        template_id = self._get_param("LaunchTemplateId")
        versions = self._get_param("Versions", []) or []
        if bool(name) == bool(template_id):
            raise InvalidParameterValue(
                "You must specify either the launch template ID or the launch template name, "
                "but not both."
            )
        if not versions or len(versions) > MAX_VERSIONS_PER_DELETE:
            raise InvalidParameterValue(
                f"You can specify 1 to {MAX_VERSIONS_PER_DELETE} launch template versions; "
                f"you specified {len(versions)}."
            )
        self.error_on_dryrun()
        backend = self.ec2_backend
        if template_id:
            template = backend.launch_templates.get(template_id)
        else:
            found = backend.launch_template_name_to_ids.get(name)
            template = backend.launch_templates.get(found) if found else None
        deleted: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []

        def refuse(version: Any, code: str, message: str) -> None:
            item: dict[str, Any] = {"ResponseError": {"Code": code, "Message": message}}
            if template is not None:
                item.update(LaunchTemplateId=template.id, LaunchTemplateName=template.name)
            elif template_id:
                item["LaunchTemplateId"] = template_id
            else:
                item["LaunchTemplateName"] = name
            try:
                item["VersionNumber"] = int(version)
            except ValueError:
                pass
            refused.append(item)

        for requested in versions:
            if template is None:
                # Reported per version, as AWS does, not as a failed request.
                kind = "Id" if template_id else "Name"
                refuse(
                    requested,
                    f"launchTemplate{kind}DoesNotExist",
                    "The specified launch template does not exist.",
                )
                continue
            try:
                number = int(requested)
            except ValueError:
                refuse(requested, "launchTemplateVersionDoesNotExist", "Invalid version.")
                continue
            version = next((v for v in template.versions if v.number == number), None)
            if version is None:
                refuse(
                    number,
                    "launchTemplateVersionDoesNotExist",
                    "The specified launch template version does not exist.",
                )
            elif number == template.default_version_number:
                # The code and wording are our guess (not observed on AWS); the outcome, a
                # per-version refusal, is as documented.
                refuse(
                    number,
                    "unexpectedError",
                    "Cannot delete the default version of a launch template.",
                )
            else:
                template.versions.remove(version)
                deleted.append(
                    {
                        "LaunchTemplateId": template.id,
                        "LaunchTemplateName": template.name,
                        "VersionNumber": number,
                    }
                )
        return ActionResult(
            {
                "SuccessfullyDeletedLaunchTemplateVersions": deleted,
                "UnsuccessfullyDeletedLaunchTemplateVersions": refused,
            }
        )

    LaunchTemplateResponse.delete_launch_template_versions = (  # type: ignore[attr-defined]
        delete_launch_template_versions
    )


def page(self: Any, items: list[Any]) -> tuple[list[Any], str | None]:
    """One page of `items` as NextToken and MaxResults ask; the token for the next one."""
    max_results = self._get_param("MaxResults")
    token = self._get_param("NextToken")
    start = 0
    if token:
        if not token.startswith(TOKEN_PREFIX) or not token[len(TOKEN_PREFIX) :].isdigit():
            raise InvalidParameterValue(f"Invalid NextToken: {token}")
        start = int(token[len(TOKEN_PREFIX) :])
    if max_results is None:
        return items[start:], None
    size = int(max_results)
    if not 1 <= size <= MAX_RESULTS:
        raise InvalidParameterValue(f"MaxResults must be between 1 and {MAX_RESULTS}: {size}")
    end = start + size
    return items[start:end], (f"{TOKEN_PREFIX}{end}" if end < len(items) else None)


def everything(self: Any, original: Callable[..., Any], hidden: set[str]) -> Any:
    """Runs the stock handler with no MaxResults limit and without the `hidden` parameters."""
    original_get_param = self._get_param

    def _get_param(param_name: str, if_none: Any = None) -> Any:
        if param_name == "MaxResults":
            return 1_000_000
        if param_name in hidden:
            return if_none
        return original_get_param(param_name, if_none)

    self._get_param = _get_param
    try:
        return original(self)
    finally:
        del self._get_param


def patch_paging() -> None:
    def make_describe_templates(original: Callable[..., Any]) -> Callable[..., Any]:
        def describe_launch_templates(self: LaunchTemplateResponse) -> Any:
            result = everything(self, original, set())
            items, token = page(self, result.result["LaunchTemplates"])
            result.result["LaunchTemplates"] = items
            if token:
                result.result["NextToken"] = token
            return result

        return describe_launch_templates

    wrap(LaunchTemplateResponse, "describe_launch_templates", make_describe_templates)

    def make_describe_versions(original: Callable[..., Any]) -> Callable[..., Any]:
        def describe_launch_template_versions(self: LaunchTemplateResponse) -> Any:
            low = self._get_int_param("MinVersion")
            high = self._get_int_param("MaxVersion")
            result = everything(self, original, {"MinVersion", "MaxVersion"})
            versions = [
                v
                for v in result.result["LaunchTemplateVersions"]
                if (low is None or v["VersionNumber"] >= low)
                and (high is None or v["VersionNumber"] <= high)
            ]
            items, token = page(self, versions)
            result.result["LaunchTemplateVersions"] = items
            if token:
                result.result["NextToken"] = token
            return result

        return describe_launch_template_versions

    wrap(LaunchTemplateResponse, "describe_launch_template_versions", make_describe_versions)
