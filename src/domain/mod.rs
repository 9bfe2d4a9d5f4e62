//! Model logic of the seed flows: snowflake ids, slugs, project save/delete (and, with later
//! issues, assign/deassign and status updates).

pub mod project;
pub mod slug;
pub mod snowflake;
