//! The RAM action that authorises each call (deploy/ram/README.md's table, where each row says
//! where the action is documented). The emulator enforces policies with it, and `doctor`
//! names it when a permission is missing.

use super::endpoint::Product;

/// The RAM action that authorises `action` of `product`, or `None` where no permission is
/// needed (STS: AssumeRoleWithOIDC is anonymous, and every identity may ask who it is).
pub fn ram_action(product: Product, action: &str) -> Option<String> {
    let service = match product {
        Product::Ecd => "ecd",
        Product::SwasOpen => "swas-open",
        Product::AppstreamCenter => "appstreaming",
        Product::Sts => return None,
    };
    let action = match (product, action) {
        // Both pages name these actions, not the API's own name.
        (Product::AppstreamCenter, "ListOtaTask") => "ListAppInstanceGroup",
        (Product::AppstreamCenter, "ApproveOtaTask") => "ModifyAppInstanceGroupAttribute",
        (_, a) => a,
    };
    Some(format!("{service}:{action}"))
}

/// Whether an error code is RAM refusing a call.
pub fn is_permission_denied(code: &str) -> bool {
    code == "Forbidden.RAM" || code.starts_with("NoPermission") || code == "Forbidden.NoPermission"
}
