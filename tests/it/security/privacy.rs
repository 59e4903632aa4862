//! Who may read what: history visibility and former members.
