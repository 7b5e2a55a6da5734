//! Set-up steps run before a load test against a system that needs its own ids made first
//! (accounts, rooms): each writes the ids file `[target.http] ids` reads. Owns talking to a
//! system's provisioning API; not the run.

pub mod matrix;
