//! The site's own tables.

diesel::table! {
    /// People who signed up.
    signups (id) {
        /// Row id: the user id.
        id -> BigInt,
        /// The address, unique.
        email -> Text,
        /// When they signed up (UTC).
        created_at -> Timestamp,
    }
}
