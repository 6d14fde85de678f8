//! Simple Application Server (swas-open 2020-06-01): custom images shared to ECS.

use serde::{Deserialize, Serialize};

use super::{Page, each_page, lenient_i64};
use crate::cloud::client::CloudClient;
use crate::cloud::endpoint::Product;
use crate::cloud::error::CloudError;
use crate::cloud::request::RpcRequest;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CustomImage {
    pub image_id: String,
    pub name: String,
    pub description: String,
    /// Shared to ECS (what ModifyImageShareStatus changes).
    pub in_share: bool,
    /// Shared to other accounts (a different feature).
    pub in_share_user: bool,
    /// `0` copying, `1` available, `2` unavailable, `3` creation failed, `4` creating.
    pub status: String,
    pub region_id: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListCustomImagesResponse {
    pub request_id: String,
    pub custom_images: Vec<CustomImage>,
    #[serde(deserialize_with = "lenient_i64")]
    pub total_count: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub page_number: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub page_size: i64,
}

/// Lists custom images of a region (only `image_ids` when given, 100 per call), every page.
pub async fn list_custom_images(
    client: &CloudClient,
    region: &str,
    image_ids: &[String],
) -> Result<Vec<CustomImage>, CloudError> {
    let mut out = Vec::new();
    list_custom_images_paged(client, region, image_ids, |page| out.extend(page)).await?;
    Ok(out)
}

/// [`list_custom_images`], handing each page to `on_page` as it arrives (a reader waiting for
/// one image need not wait for the last page) instead of keeping it.
pub async fn list_custom_images_paged(
    client: &CloudClient,
    region: &str,
    image_ids: &[String],
    mut on_page: impl FnMut(Vec<CustomImage>),
) -> Result<(), CloudError> {
    let groups: Vec<&[String]> = if image_ids.is_empty() {
        vec![&[]]
    } else {
        image_ids.chunks(100).collect()
    };
    for ids in groups {
        let read = |page: i64| async move {
            let mut req = RpcRequest::new(Product::SwasOpen, "ListCustomImages", region)
                .query("RegionId", region)
                .query("PageSize", "100")
                .query("PageNumber", page.to_string());
            if !ids.is_empty() {
                // A JSON array in a string, as the API defines it.
                req = req.query("ImageIds", serde_json::to_string(ids).expect("strings serialize"));
            }
            let resp: ListCustomImagesResponse = client.call_typed(&req).await?;
            Ok(Page {
                items: resp.custom_images,
                page_size: resp.page_size,
                total_count: resp.total_count,
            })
        };
        each_page(read, &mut on_page).await?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareOperation {
    Share,
    UnShare,
}

impl ShareOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareOperation::Share => "Share",
            ShareOperation::UnShare => "UnShare",
        }
    }

    pub fn parse(text: &str) -> Option<ShareOperation> {
        [ShareOperation::Share, ShareOperation::UnShare]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// Shares a custom image to ECS or stops sharing it. `client_token` (ASCII, at most 64
/// characters) makes a retried call act once.
pub async fn modify_image_share_status(
    client: &CloudClient,
    region: &str,
    image_id: &str,
    operation: ShareOperation,
    client_token: &str,
) -> Result<(), CloudError> {
    if client_token.len() > 64 || !client_token.is_ascii() {
        return Err(CloudError::InvalidRequest(
            "ClientToken must be ASCII and at most 64 characters".into(),
        ));
    }
    let req = RpcRequest::new(Product::SwasOpen, "ModifyImageShareStatus", region)
        .write()
        .query("RegionId", region)
        .query("ImageId", image_id)
        .query("Operation", operation.as_str())
        .query("ClientToken", client_token);
    client.call(&req).await.map(drop)
}
