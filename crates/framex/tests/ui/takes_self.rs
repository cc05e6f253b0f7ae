struct Reports;

impl Reports {
    #[framex::on_proxy]
    async fn build_report(&self, job_id: String) -> Result<String, framex::Error> {
        Ok(job_id)
    }
}

fn main() {}
