#[framex::on_proxy(nmae = "reports.build")]
async fn build_report(job_id: String) -> Result<String, framex::Error> {
    Ok(job_id)
}

fn main() {}
