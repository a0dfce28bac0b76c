//! Rows the store tests create.

use mq_core::domain::{NewProduct, NewUser, UserRepo};
use product_pipeline_store::Store;
use rust_decimal::Decimal;

pub fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

pub fn new_user(mobile: &str) -> NewUser {
    NewUser {
        name: "Zoë 李雷 🚀".into(),
        mobile: mobile.into(),
        latitude: -89.123456,
        longitude: 179.654321,
    }
}

pub fn new_product(user_id: i64, name: &str, price: &str) -> NewProduct {
    NewProduct {
        user_id,
        product_name: name.into(),
        product_description: Some("a description".into()),
        product_images: vec!["https://example.com/a.jpg".into()],
        product_price: dec(price),
    }
}

pub async fn user(store: &Store, mobile: &str) -> i64 {
    store.create_user(new_user(mobile)).await.unwrap().id
}
