//! Forms the attribute accepts.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Report {
    pub lines: Vec<String>,
}

#[framex::on_proxy]
async fn no_arguments() -> Result<(), framex::Error> {
    Ok(())
}

#[framex::on_proxy(name = "your_module.build_report")]
pub async fn build_report(mut job_id: String, r#type: Option<u8>) -> Result<Report, framex::Error> {
    job_id.push('!');
    let _ = r#type;
    Ok(Report { lines: vec![job_id] })
}

/// Any error type that holds a `framex::Error`.
#[framex::on_proxy]
pub(crate) async fn with_anyhow(count: u32) -> anyhow::Result<u32> {
    Ok(count)
}

fn main() {
    use_aliased();
    let _ = (no_arguments(), build_report(String::new(), None), with_anyhow(1));
}

/// An alias of a `Result` is a `Result`.
type Outcome = Result<u32, framex::Error>;

#[framex::on_proxy]
async fn aliased(count: u32) -> Outcome {
    Ok(count)
}

fn use_aliased() {
    let _ = aliased(1);
}
