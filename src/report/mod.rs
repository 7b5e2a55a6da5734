//! Reports: the summary model, threshold verdicts, the console table, Markdown and the
//! bundle on disk. Reads measurements; never measures.

pub mod accounting;
pub mod bundle;
pub mod compare;
pub mod console;
pub mod escape;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod summary;
pub mod svg;
pub mod verdict;

pub use summary::{Accounting, LatencyStats, Summary};
