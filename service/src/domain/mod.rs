//! The domain core: pure rules with no HTTP, SQL or Kubernetes in them.
//!
//! - [`access`]: roles, grants and who may do what on a node.
//! - [`calendar`]: UTC calendar arithmetic on Unix seconds.
//! - [`window`]: windows (`minute` .. `month`, `none`) and their periods.
//! - [`counter`]: one usage counter, its rollover and overflow rules.
//! - [`tenant`]: a flat tenant's limits, usage and exceedance.
//! - [`tenant_id`]: which tenant and node ids are accepted.
//! - [`resource`]: resource names and the built-in resources.
//! - [`node`]: a quota node and the hierarchy arithmetic.
//! - [`limit_change`]: what a change of a node's limits asks of its parent.
//! - [`headroom`]: what a usage call leaves of each limit (the RateLimit
//!   fields' figures).

pub mod access;
pub mod calendar;
pub mod counter;
pub mod headroom;
pub mod limit_change;
pub mod node;
pub mod resource;
pub mod stamp;
pub mod tenant;
pub mod tenant_id;
pub mod window;
