//! `chatload schema`: the JSON Schema of the scenario format.

use super::PASSED;

pub fn run() -> u8 {
    println!("{}", chatload::scenario::schema::json());
    PASSED
}
