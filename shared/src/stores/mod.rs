//! One module per store: wire models, authentication/verification, and a pure translation.

pub mod appstore;
pub mod huawei;
pub mod playstore;
