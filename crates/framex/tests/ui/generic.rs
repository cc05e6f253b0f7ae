#[framex::on_proxy]
async fn echo<T: serde::Serialize>(value: T) -> Result<String, framex::Error> {
    Ok(serde_json::to_string(&value).unwrap_or_default())
}

fn main() {}
