use celery_web::prelude::*;

struct Mailer;

impl Mailer {
    #[task]
    fn send(&self, to: String) {
        let _ = to;
    }
}

fn main() {
    Mailer.send("a@example.com".to_owned());
}
