#[framex::on_proxy]
async fn add((a, b): (i64, i64)) -> Result<i64, framex::Error> {
    Ok(a + b)
}

fn main() {}
