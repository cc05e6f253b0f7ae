#[framex::on_proxy]
async fn notify(job_id: String) {
    let _ = job_id;
}

fn main() {}
