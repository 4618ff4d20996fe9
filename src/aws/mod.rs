//! Placeholder until the SDK adapter lands.
#![expect(unused_variables, reason = "placeholder")]
use crate::core::cloud::*;
use crate::core::fleet::*;
use crate::core::health::TargetHealth;
use crate::core::names::*;
use crate::core::router::*;

pub struct AwsCloud;
impl AwsCloud {
    pub async fn connect(region: Option<&str>) -> AwsCloud {
        AwsCloud
    }
    pub fn region(&self) -> Option<String> {
        None
    }
}
impl Cloud for AwsCloud {
    async fn router(&self, id: &RouterId) -> CloudResult<RouterState> {
        todo!()
    }
    async fn target_group(&self, arn: &TargetGroupArn) -> CloudResult<TargetGroupInfo> {
        todo!()
    }
    async fn fleets(&self, target_groups: &[TargetGroupArn]) -> CloudResult<Vec<FleetSummary>> {
        todo!()
    }
    async fn fleet_config(&self, name: &FleetName) -> CloudResult<FleetConfig> {
        todo!()
    }
    async fn target_health(&self, target_group: &TargetGroupArn) -> CloudResult<Vec<TargetHealth>> {
        todo!()
    }
    async fn image_exists(&self, image: &ImageId) -> CloudResult<bool> {
        todo!()
    }
    async fn launch_template_version(
        &self,
        template: &LaunchTemplateRef,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        todo!()
    }
    async fn find_launch_template_version(
        &self,
        template_id: &str,
        description: &str,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        todo!()
    }
    async fn create_launch_template_version(
        &self,
        template_id: &str,
        source_version: u64,
        image: &ImageId,
        description: &str,
    ) -> CloudResult<LaunchTemplateVersion> {
        todo!()
    }
    async fn create_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        todo!()
    }
    async fn configure_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        todo!()
    }
    async fn set_capacity(&self, name: &FleetName, capacity: Capacity) -> CloudResult<()> {
        todo!()
    }
    async fn tag_fleet(&self, name: &FleetName, tags: &[(String, String)]) -> CloudResult<()> {
        todo!()
    }
    async fn untag_fleet(&self, name: &FleetName, keys: &[String]) -> CloudResult<()> {
        todo!()
    }
    async fn delete_fleet(&self, name: &FleetName) -> CloudResult<()> {
        todo!()
    }
    async fn route(&self, id: &RouterId, forwards: &[Forward]) -> CloudResult<()> {
        todo!()
    }
}
