//! `chatload plan`: the offered load a scenario implies, and with `--capacity` the servers it
//! needs; nothing sent.

use super::{BAD_INPUT, PASSED, RUN_FAILED};
use chatload::scenario;

pub fn run(args: crate::cli::PlanArgs) -> u8 {
    let crate::cli::PlanArgs {
        file,
        users,
        json,
        capacity,
        headroom,
    } = args;
    match scenario::load(&file) {
        Ok(s) => {
            let p = chatload::plan::plan(&s, users);
            if json {
                match serde_json::to_string_pretty(&p) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("chatload: cannot write JSON: {e}");
                        return RUN_FAILED;
                    }
                }
            } else {
                print!("{}", chatload::plan::render(&p));
            }
            match capacity {
                Some(dir) => super::capacity::servers_needed(&p, &dir, &headroom),
                None => PASSED,
            }
        }
        Err(e) => {
            eprintln!("{e}");
            BAD_INPUT
        }
    }
}
