//! Placeholder: the Splunk .conf parser is being written.
