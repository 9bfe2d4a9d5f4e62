//! Enum values as Sentry stores them (GroupStatus, GroupSubStatus, ActivityType, GroupHistory).

pub mod group_status {
    pub const UNRESOLVED: i32 = 0;
    pub const RESOLVED: i32 = 1;
    pub const IGNORED: i32 = 2;
}

pub mod substatus {
    pub const UNTIL_ESCALATING: i32 = 1;
    pub const ESCALATING: i32 = 2;
    pub const ONGOING: i32 = 3;
    pub const UNTIL_CONDITION_MET: i32 = 4;
    pub const FOREVER: i32 = 5;
    pub const REGRESSED: i32 = 6;
    pub const NEW: i32 = 7;
}

pub mod activity {
    pub const SET_RESOLVED: i32 = 1;
    pub const SET_UNRESOLVED: i32 = 2;
    pub const SET_IGNORED: i32 = 3;
    pub const SET_REGRESSION: i32 = 6;
    pub const ASSIGNED: i32 = 11;
    pub const UNASSIGNED: i32 = 12;
    pub const SET_RESOLVED_IN_RELEASE: i32 = 13;
    pub const SET_RESOLVED_IN_COMMIT: i32 = 16;
    /// An external issue was linked (or created) for the group; data: provider, title,
    /// location (web URL), label (the key), `new`.
    pub const CREATE_ISSUE: i32 = 21;
    pub const AUTO_SET_ONGOING: i32 = 24;
}

pub mod history {
    pub const UNRESOLVED: i32 = 0;
    pub const RESOLVED: i32 = 1;
    pub const AUTO_RESOLVED: i32 = 2;
    pub const IGNORED: i32 = 3;
    pub const UNIGNORED: i32 = 4;
    pub const ASSIGNED: i32 = 5;
    pub const UNASSIGNED: i32 = 6;
    pub const REGRESSED: i32 = 7;
    pub const SET_RESOLVED_IN_RELEASE: i32 = 11;

    const RESOLVED_SET: &[i32] = &[RESOLVED, AUTO_RESOLVED, SET_RESOLVED_IN_RELEASE];
    const UNRESOLVED_SET: &[i32] = &[UNRESOLVED, UNIGNORED, REGRESSED];

    /// Statuses a row of `status` links back to as its previous history.
    pub fn inverse(status: i32) -> &'static [i32] {
        match status {
            ASSIGNED => &[UNASSIGNED],
            UNASSIGNED => &[ASSIGNED],
            RESOLVED | AUTO_RESOLVED | SET_RESOLVED_IN_RELEASE => UNRESOLVED_SET,
            UNRESOLVED | REGRESSED | UNIGNORED => RESOLVED_SET,
            IGNORED => UNRESOLVED_SET,
            _ => &[],
        }
    }

    /// The history status an activity type writes.
    pub fn from_activity(activity_type: i32) -> Option<i32> {
        use super::activity as a;
        Some(match activity_type {
            a::SET_RESOLVED | a::SET_RESOLVED_IN_COMMIT => RESOLVED,
            a::SET_RESOLVED_IN_RELEASE => SET_RESOLVED_IN_RELEASE,
            a::SET_UNRESOLVED | a::AUTO_SET_ONGOING => UNRESOLVED,
            a::SET_IGNORED => IGNORED,
            a::SET_REGRESSION => REGRESSED,
            a::ASSIGNED => ASSIGNED,
            a::UNASSIGNED => UNASSIGNED,
            _ => return None,
        })
    }
}

pub mod subscription_reason {
    pub const ASSIGNED: i32 = 2;
    pub const STATUS_CHANGE: i32 = 4;
}
