//! Running explanations as the commands do: options to settings ([`ExplainOptions`]), the
//! models and names ([`Models`]), the query's label map ([`query_labels`]) and the result
//! folder of one image ([`write_result`]). `steex explain`, `steex explain-dir` and the demo
//! go through here.

mod models;
mod options;
mod result;

pub use models::{Models, Resolved, query_labels};
pub use options::ExplainOptions;
pub use result::{ImageArrays, split_explanation, write_result};
