//! Monthly vaccination reports and claims without I/O: fee schedules with effective dates,
//! cross-municipality schemes, exact yen totals, and the claim batches as R4 Claims. Schemes,
//! sources and data formats: docs/billing.md.

mod claim;
mod close;
mod data;
mod error;
mod money;
mod month;

pub use claim::{
    BILLING_SCHEME_EXTENSION, CLAIM_BATCH_SYSTEM, DOSE_NUMBER_EXTENSION,
    HOME_MUNICIPALITY_EXTENSION, KOKUHO_REN_SYSTEM, VACCINE_PRODUCT_EXTENSION, claim_resource,
};
pub use close::{
    BatchKind, BillableVaccination, BillingException, ClaimBatch, ClaimLine, Eligibility,
    ExceptionKind, MonthClose, NotBilled, Party, batch_id, close_month,
};
pub use data::{
    AmountRule, BillingData, ClaimRoute, DueDay, Fee, FeeMiss, FeeSchedule, FileInfo, Scheme,
    SchemeKind, VACCINE_TYPE_SYSTEM,
};
pub use error::BillingError;
pub use money::{MAX_FEE, Yen};
pub use month::{YearMonth, format_day, parse_day};
