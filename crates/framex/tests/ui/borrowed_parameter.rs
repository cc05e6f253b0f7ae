#[framex::on_proxy]
async fn build_report(job_id: &str) -> Result<String, framex::Error> {
    Ok(job_id.to_owned())
}

fn main() {}
