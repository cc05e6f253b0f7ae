/// The error type cannot carry a failed remote call.
#[framex::on_proxy]
async fn build_report(job_id: String) -> Result<String, std::num::ParseIntError> {
    Ok(job_id)
}

fn main() {}
