//! Model logic of the seed flows: snowflake ids, slugs, project save/delete (and, with later
//! issues, assign/deassign and status updates).

pub mod assign;
pub mod caches;
pub mod project;
pub mod slug;
pub mod snowflake;
pub mod status;
pub mod types;
