//! FHIR R4 search without I/O (R4 section 3.1.1): which parameters exist for each type (from the
//! official SearchParameter definitions), the index values a resource produces for them, parsed
//! queries, and whether a resource's index values satisfy a query.

mod date;
mod fhirpath;
mod index;
mod normalize;
mod query;
mod registry;

pub use date::{DateRange, parse_date_range};
pub use index::{IndexEntry, IndexValue, extract, extract_params, sort_key};
pub use normalize::normalize_text;
pub use query::{
    Control, Criterion, Include, Modifier, Query, QueryError, SearchValue, Seek, SortSpec, Summary,
    TotalMode, parse_query,
};
pub use registry::{ParamDef, ParamKind, Registry};
