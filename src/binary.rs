//! The OpenAPI shape of a raw byte body (a file download, a snapshot archive): a string of
//! format `binary`, which generated clients read as a file. `Vec<u8>` would be documented
//! as an array of integers, which is not what travels.

/// Raw bytes, as the body of a response.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // only its schema is used
pub struct Binary(Vec<u8>);
