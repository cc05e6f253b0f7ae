#[framex::on_proxy]
fn build_report(job_id: String) -> Result<String, framex::Error> {
    Ok(job_id)
}

fn main() {}
