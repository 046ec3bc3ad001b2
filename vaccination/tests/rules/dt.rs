//! 2種混合 (DT) 2期: 11歳以上13歳未満 (specs digest §4.3).

use time::macros::date;
use vaccination::{DoseStatus, FindingKind::*};

use crate::common::*;

#[test]
fn window_edges() {
    // Born 2014-04-02: 11歳 reached 2025-04-01, 13歳 reached 2027-04-01.
    let person = child(date!(2014 - 04 - 02));
    for (day, expected, case) in [
        (date!(2025 - 03 - 31), vec![Age], "before 11歳"),
        (date!(2025 - 04 - 01), vec![], "11歳 reached"),
        (
            date!(2027 - 04 - 01),
            vec![],
            "13歳 reached: still 13歳未満",
        ),
        (date!(2027 - 04 - 02), vec![Age], "the 13th birthday"),
    ] {
        assert_kinds(&check(&person, &[], &dose("dt", day)), &expected, case);
    }
    // Standard: 11歳 (2025-04-01 … 12歳 reached 2026-04-01).
    let plan = schedule(&person, &[], date!(2026 - 04 - 02));
    assert_eq!(statuses(&plan, "dt"), [DoseStatus::Overdue]);
    assert_eq!(
        items(&plan, "dt")[0].recommended_to,
        Some(date!(2026 - 04 - 01))
    );
}
