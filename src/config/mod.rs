//! Settings from the app's `default/` and `local/` .conf files.

pub mod conf;
pub mod options;
pub mod paths;
pub mod settings;

pub use settings::BackfillSettings;
