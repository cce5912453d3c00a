//! The Zinc server: the sans-IO Zab core, request prep, sessions, watches, and the glommio shell
//! around them.

pub mod acl;
pub mod config;
pub mod session;
pub mod sim;
pub mod zab;
