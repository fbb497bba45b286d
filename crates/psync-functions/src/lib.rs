//! Aggregate functions for Profiles Sync histories, each with a native
//! `GroupsAccumulator`:
//!
//! | function | result |
//! | --- | --- |
//! | `last_seen(value, k1 [, k2 ...])` | the last non-NULL `value` in update order |
//! | `latest(value, k1 [, k2 ...])` | the `value` of the latest row, even if NULL |
//! | `last_seen_struct(struct, k1 [, k2 ...])` | `last_seen` of every struct field, in one pass |
//! | `last_seen_state(struct, k1 [, k2 ...])` | the same, as a state (values and their keys) to store |
//! | `last_seen_merge(state)` | several states merged into one, as if all rows had been seen at once |
//!
//! "Update order" is the order keys compared left to right, a NULL key lower than
//! any value; on a full tie of all keys the greatest value wins. The result is
//! therefore independent of row order, batch sizes and partitioning.
//!
//! ```sql
//! SELECT segment_id,
//!        last_seen(email, seq, "timestamp", uuid_ts) AS email,
//!        latest(canonical_segment_id, seq, "timestamp", uuid_ts) AS points_to
//! FROM updates GROUP BY segment_id;
//! ```

mod groups;
mod order;
mod row;
mod single_phase;
mod udaf;

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::SessionContext;

pub use single_phase::SinglePhaseWideAggregates;
pub use udaf::{Kind, LastSeenUdaf, parse_state_struct, state_key_name, state_struct_fields};

macro_rules! singleton {
    ($fn_name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $fn_name() -> Arc<AggregateUDF> {
            static UDAF: LazyLock<Arc<AggregateUDF>> =
                LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(LastSeenUdaf::new($kind))));
            Arc::clone(&UDAF)
        }
    };
}

singleton!(
    last_seen,
    Kind::LastSeen,
    "The `last_seen` aggregate function."
);
singleton!(latest, Kind::Latest, "The `latest` aggregate function.");
singleton!(
    last_seen_struct,
    Kind::LastSeenStruct,
    "The `last_seen_struct` aggregate function."
);

singleton!(
    last_seen_state,
    Kind::LastSeenState,
    "The `last_seen_state` aggregate function."
);
singleton!(
    last_seen_merge,
    Kind::LastSeenMerge,
    "The `last_seen_merge` aggregate function."
);

/// Every function of this crate.
pub fn all() -> Vec<Arc<AggregateUDF>> {
    vec![
        last_seen(),
        latest(),
        last_seen_struct(),
        last_seen_state(),
        last_seen_merge(),
    ]
}

/// Registers every function of this crate in `ctx`. (Sessions built with a
/// `SessionStateBuilder` should also add [`SinglePhaseWideAggregates`] to their
/// physical optimizer rules.)
pub fn register_all(ctx: &SessionContext) {
    for f in all() {
        ctx.register_udaf(f.as_ref().clone());
    }
}
