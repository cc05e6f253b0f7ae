struct Job;

#[framex::on_proxy]
async fn build_report(job: Job) -> Result<String, framex::Error> {
    let _ = job;
    Ok(String::new())
}

fn main() {}
