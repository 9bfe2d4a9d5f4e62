//! Project slugs agree with the main product's: Django's `slugify` (NFKD, then non-ASCII
//! dropped, not transliterated), and Sentry's random fallback when nothing is left.

mod common;

use common::TestApp;
use serde_json::json;

db_tests!(project_slugs_follow_django_slugify);

async fn slug_of(app: &TestApp, org: i64, name: &str) -> String {
    app.create(
        &format!("/organizations/{org}/projects"),
        json!({"name": name}),
    )
    .await["slug"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn project_slugs_follow_django_slugify(app: TestApp) {
    let org = app.create("/organizations", json!({"name": "Acme"})).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(slug_of(&app, org, "Straße").await, "strae");
    assert_eq!(slug_of(&app, org, "Crème Brûlée").await, "creme-brulee");
    assert_eq!(slug_of(&app, org, "北京 Office").await, "office");
    // Nothing ASCII is left: Sentry's fallback, 12 random hex characters.
    for name in ["北京", "Привет"] {
        let slug = slug_of(&app, org, name).await;
        assert!(
            slug.len() == 12 && slug.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}: {slug}"
        );
    }
    // Organizations and teams slugify the same way.
    let o = app.create("/organizations", json!({"name": "Größe"})).await;
    assert_eq!(o["slug"], "groe");
    let t = app
        .create(
            &format!("/organizations/{org}/teams"),
            json!({"name": "Équipe Ω"}),
        )
        .await;
    assert_eq!(t["slug"], "equipe");
}
