#[framex::on_proxy]
async fn build_report(job_id: String) -> String {
    job_id
}

#[framex::on_proxy]
async fn pair(job_id: String) -> (String, u32) {
    (job_id, 1)
}

fn main() {}
