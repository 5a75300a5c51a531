//! The site's own tables.

diesel::table! {
    /// People who signed up.
    signups (id) {
        id -> BigInt,
        email -> Text,
        created_at -> Timestamp,
    }
}
