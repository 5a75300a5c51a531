//! Periodic task pages (django-celery-beat's admin): list with filters, create, edit,
//! enable/disable, run now, delete. Writes go through [`BeatStore`], which keeps beat's change
//! marker right, so a running beat picks edits up within a second.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::error::AdminError;
use super::layout::{encode, html, redirect, when, Layout};
use super::periodic_task_input::{FieldErrors, PeriodicTaskForm};
use super::Mounted;
use crate::beat::schedule::{Period, SolarEvent};
use crate::beat::{BeatStore, Firing, PeriodicTask, PeriodicTaskDefinition, Source};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/periodic-tasks", web::get().to(list))
        .route("/periodic-tasks/new", web::get().to(new_form))
        .route("/periodic-tasks/new", web::post().to(create))
        .route("/periodic-tasks/{id}", web::get().to(edit_form))
        .route("/periodic-tasks/{id}", web::post().to(update))
        .route("/periodic-tasks/{id}/enable", web::post().to(enable))
        .route("/periodic-tasks/{id}/disable", web::post().to(disable))
        .route("/periodic-tasks/{id}/run", web::post().to(run_now))
        .route("/periodic-tasks/{id}/delete", web::post().to(delete));
}

/// Runs a blocking [`BeatStore`] call off the async threads.
pub(crate) async fn with_store<R: Send + 'static>(
    mounted: &Mounted,
    call: impl FnOnce(&BeatStore) -> crate::Result<R> + Send + 'static,
) -> Result<R, AdminError> {
    let store = BeatStore::new(mounted.db().clone());
    web::block(move || call(&store))
        .await
        .map_err(|e| {
            let error = crate::db::DatabaseError::new(crate::db::DatabaseErrorKind::Other, e);
            AdminError::Internal(crate::Error::Database(
                error.context("database task panicked"),
            ))
        })?
        .map_err(AdminError::Internal)
}

/// One row of the list.
struct Row {
    id: i64,
    name: String,
    task: String,
    schedule: String,
    enabled: bool,
    one_off: bool,
    source: &'static str,
    last_run: String,
    next_run: String,
    runs: i64,
    /// Why the row cannot be used, when it is malformed.
    broken: Option<String>,
}

impl Row {
    fn of(task: &PeriodicTask) -> Row {
        Row {
            id: task.id,
            name: task.definition.name.clone(),
            task: task.definition.task.clone(),
            schedule: task.definition.schedule.describe(),
            enabled: task.enabled,
            one_off: task.definition.one_off,
            source: task.source.as_str(),
            last_run: task.last_run_at.as_ref().map(when).unwrap_or_default(),
            next_run: if task.enabled {
                task.next_firing().as_ref().map(when).unwrap_or_default()
            } else {
                String::new()
            },
            runs: task.total_run_count,
            broken: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    /// `yes`, `no` or empty.
    enabled: String,
    task: String,
    q: String,
}

#[derive(Template)]
#[template(path = "admin/periodic_tasks.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    filter: ListQuery,
    tasks: Vec<String>,
    total: usize,
}

async fn list(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AdminError> {
    let filter = query.into_inner();
    let loaded = with_store(&mounted, |store| store.load()).await?;
    let total = loaded.len();
    let mut tasks: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let needle = filter.q.trim().to_lowercase();
    for entry in loaded {
        let row = match entry {
            Ok(task) => Row::of(&task),
            Err(bad) => Row {
                id: bad.id,
                name: bad.name,
                task: String::new(),
                schedule: String::new(),
                enabled: false,
                one_off: false,
                source: "db",
                last_run: String::new(),
                next_run: String::new(),
                runs: 0,
                broken: Some(bad.reason),
            },
        };
        if !row.task.is_empty() && !tasks.contains(&row.task) {
            tasks.push(row.task.clone());
        }
        let keep = match filter.enabled.as_str() {
            "yes" => row.enabled,
            "no" => !row.enabled,
            _ => true,
        } && (filter.task.is_empty() || row.task == filter.task)
            && (needle.is_empty() || row.name.to_lowercase().contains(&needle));
        if keep {
            rows.push(row);
        }
    }
    tasks.sort();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    html(&ListPage {
        layout: Layout::new(&req, &mounted, "periodic"),
        rows,
        filter,
        tasks,
        total,
    })
}

#[derive(Template)]
#[template(path = "admin/periodic_task_form.html")]
struct FormPage {
    layout: Layout,
    /// `None` for a new task.
    id: Option<i64>,
    form: PeriodicTaskForm,
    errors: FieldErrors,
    /// The saved task's facts (edit page only).
    facts: Option<Facts>,
    /// Names of the tasks this site has: the task select's options.
    known_tasks: Vec<String>,
    periods: Vec<&'static str>,
    events: Vec<&'static str>,
    /// Why the form is read-only (a task from settings or code).
    read_only: Option<String>,
}

struct Facts {
    schedule: String,
    enabled: bool,
    source: &'static str,
    last_run: String,
    next_run: String,
    runs: i64,
    changed: String,
    firings: Vec<FiringRow>,
}

struct FiringRow {
    scheduled: String,
    lateness_ms: i64,
    task_id: String,
    beat: String,
}

impl FiringRow {
    fn of(firing: &Firing) -> FiringRow {
        FiringRow {
            scheduled: when(&firing.scheduled_at),
            lateness_ms: (firing.fired_at - firing.scheduled_at).num_milliseconds(),
            task_id: firing.task_id.clone(),
            beat: firing.beat.clone(),
        }
    }
}

impl FormPage {
    /// Whether `name` is the form's task (its option is selected).
    fn is_chosen(&self, name: &str) -> bool {
        self.form.task_name() == name
    }

    /// What the free-text task input shows: the task when it is not one of the site's.
    fn typed_task(&self) -> &str {
        let task = self.form.task_name();
        if self.known_tasks.iter().any(|known| known == task) {
            ""
        } else {
            task
        }
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    /// Errors about fields the form has no place for.
    fn other_errors(&self) -> Vec<(&str, &str)> {
        const PLACED: &[&str] = &[
            "name",
            "task",
            "every",
            "period",
            "minute",
            "hour",
            "day_of_week",
            "day_of_month",
            "month_of_year",
            "timezone",
            "event",
            "latitude",
            "longitude",
            "clocked_time",
            "args",
            "kwargs",
            "queue",
            "priority",
            "expire_seconds",
            "headers",
            "start_time",
        ];
        self.errors
            .iter()
            .filter(|(field, _)| !PLACED.contains(&field.as_str()))
            .map(|(field, message)| (field.as_str(), message.as_str()))
            .collect()
    }

    fn new(
        req: &HttpRequest,
        mounted: &Mounted,
        id: Option<i64>,
        form: PeriodicTaskForm,
        errors: FieldErrors,
    ) -> FormPage {
        let mut known_tasks: Vec<String> = mounted
            .app()
            .registry()
            .names()
            .map(str::to_owned)
            .collect();
        known_tasks.sort();
        FormPage {
            layout: Layout::new(req, mounted, "periodic"),
            id,
            form,
            errors,
            facts: None,
            known_tasks,
            periods: Period::ALL.iter().map(|p| p.as_str()).collect(),
            events: SolarEvent::ALL.iter().map(|e| e.as_str()).collect(),
            read_only: None,
        }
    }

    fn action(&self) -> String {
        match self.id {
            Some(id) => format!("{}/periodic-tasks/{id}", self.layout.prefix),
            None => format!("{}/periodic-tasks/new", self.layout.prefix),
        }
    }
}

async fn new_form(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
) -> Result<HttpResponse, AdminError> {
    let form = PeriodicTaskForm::blank(&mounted.app().settings().timezone);
    html(&FormPage::new(
        &req,
        &mounted,
        None,
        form,
        FieldErrors::new(),
    ))
}

/// Loads the periodic task `id`, or answers 404.
async fn load(mounted: &Mounted, id: i64) -> Result<PeriodicTask, AdminError> {
    match with_store(mounted, move |store| store.load_one(id)).await? {
        Some(Ok(task)) => Ok(task),
        Some(Err(bad)) => Err(AdminError::BadRequest(format!(
            "Periodic task {:?} cannot be read: {}. Fix or delete the row.",
            bad.name, bad.reason
        ))),
        None => Err(AdminError::NotFound(format!(
            "There is no periodic task {id}."
        ))),
    }
}

async fn edit_form(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AdminError> {
    let id = id.into_inner();
    let task = load(&mounted, id).await?;
    let form = PeriodicTaskForm::of(&task, &mounted.app().settings().timezone);
    let page = edit_page(&req, &mounted, &task, form, FieldErrors::new()).await?;
    html(&page)
}

async fn edit_page(
    req: &HttpRequest,
    mounted: &Mounted,
    task: &PeriodicTask,
    form: PeriodicTaskForm,
    errors: FieldErrors,
) -> Result<FormPage, AdminError> {
    let id = task.id;
    let firings = with_store(mounted, move |store| store.firings(id)).await?;
    let mut page = FormPage::new(req, mounted, Some(id), form, errors);
    let row = Row::of(task);
    page.facts = Some(Facts {
        schedule: row.schedule,
        enabled: row.enabled,
        source: row.source,
        last_run: row.last_run,
        next_run: row.next_run,
        runs: row.runs,
        changed: when(&task.date_changed),
        firings: firings.iter().rev().take(20).map(FiringRow::of).collect(),
    });
    if task.source != Source::Database {
        page.read_only = Some(format!(
            "This periodic task comes from the site's {}: beat rewrites it from there when it \
             starts, so change it there. It can still be enabled, disabled or run now here.",
            if task.source == Source::Settings {
                "settings (beat_schedule)"
            } else {
                "code (add_periodic_task)"
            }
        ));
    }
    Ok(page)
}

/// Writes `definition` as a new periodic task (`existing` is `None`) or over `existing`
/// (renaming it if the name changed), then sets `enabled`; returns its id, or a field error
/// when another periodic task has the name.
pub(crate) async fn store_definition(
    mounted: &Mounted,
    existing: Option<&PeriodicTask>,
    definition: PeriodicTaskDefinition,
    enabled: bool,
) -> Result<Result<i64, FieldErrors>, AdminError> {
    let renamed = existing.is_none_or(|task| task.definition.name != definition.name);
    if renamed {
        let name = definition.name.clone();
        if with_store(mounted, move |store| store.get(&name))
            .await?
            .is_some()
        {
            return Ok(Err(FieldErrors::from([(
                "name".to_owned(),
                "another periodic task has this name".to_owned(),
            )])));
        }
    }
    let existing = existing.map(|task| (task.id, task.enabled));
    let id = with_store(mounted, move |store| {
        if let (Some((id, _)), true) = (existing, renamed) {
            store.rename(id, &definition.name)?;
        }
        let id = store.save(&definition, Source::Database)?;
        if existing.map_or(!enabled, |(_, was)| was != enabled) {
            store.set_enabled(id, enabled)?;
        }
        Ok(id)
    })
    .await?;
    Ok(Ok(id))
}

async fn create(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    form: web::Form<PeriodicTaskForm>,
) -> Result<HttpResponse, AdminError> {
    let form = form.into_inner();
    let checked = form
        .to_input()
        .and_then(|input| input.to_definition(mounted.default_timezone()));
    let definition = match checked {
        Ok(definition) => definition,
        Err(errors) => return refused(FormPage::new(&req, &mounted, None, form, errors)),
    };
    let name = definition.name.clone();
    let id = match store_definition(&mounted, None, definition, form.is_enabled()).await? {
        Ok(id) => id,
        Err(errors) => return refused(FormPage::new(&req, &mounted, None, form, errors)),
    };
    tracing::info!(%name, id, "admin created a periodic task");
    Ok(redirect(
        &mounted.url("/periodic-tasks"),
        Some(&format!("Created periodic task “{name}”.")),
    ))
}

/// The form again with its errors, as 422.
fn refused(page: FormPage) -> Result<HttpResponse, AdminError> {
    let mut response = html(&page)?;
    *response.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

async fn update(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    id: web::Path<i64>,
    form: web::Form<PeriodicTaskForm>,
) -> Result<HttpResponse, AdminError> {
    let id = id.into_inner();
    let task = load(&mounted, id).await?;
    let form = form.into_inner();
    if task.source != Source::Database {
        return Err(AdminError::BadRequest(format!(
            "Periodic task {:?} comes from the site's {}; change it there.",
            task.definition.name,
            task.source.as_str()
        )));
    }
    let checked = form
        .to_input()
        .and_then(|input| input.to_definition(mounted.default_timezone()));
    let definition = match checked {
        Ok(definition) => definition,
        Err(errors) => {
            let page = edit_page(&req, &mounted, &task, form, errors).await?;
            return refused(page);
        }
    };
    let name = definition.name.clone();
    if let Err(errors) =
        store_definition(&mounted, Some(&task), definition, form.is_enabled()).await?
    {
        let page = edit_page(&req, &mounted, &task, form, errors).await?;
        return refused(page);
    }
    tracing::info!(%name, id, "admin changed a periodic task");
    Ok(redirect(
        &mounted.url(&format!("/periodic-tasks/{id}")),
        Some(&format!("Saved periodic task “{name}”.")),
    ))
}

async fn set_enabled(
    mounted: &Mounted,
    id: i64,
    enabled: bool,
) -> Result<HttpResponse, AdminError> {
    let task = load(mounted, id).await?;
    with_store(mounted, move |store| store.set_enabled(id, enabled)).await?;
    let word = if enabled { "Enabled" } else { "Disabled" };
    Ok(redirect(
        &mounted.url("/periodic-tasks"),
        Some(&format!("{word} periodic task “{}”.", task.definition.name)),
    ))
}

async fn enable(
    mounted: web::Data<Mounted>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AdminError> {
    set_enabled(&mounted, id.into_inner(), true).await
}

async fn disable(
    mounted: web::Data<Mounted>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AdminError> {
    set_enabled(&mounted, id.into_inner(), false).await
}

/// Sends the task now, as beat would (its arguments, queue, priority, headers, expiry), without
/// touching its schedule.
async fn run_now(
    mounted: web::Data<Mounted>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AdminError> {
    let task = load(&mounted, id.into_inner()).await?;
    let sent = mounted.app().send(task.signature(Utc::now())).await?;
    tracing::info!(name = %task.definition.name, task_id = %sent.id(), "admin ran a periodic task now");
    Ok(redirect(
        &mounted.url(&format!("/results/{}", encode(sent.id()))),
        Some(&format!(
            "Sent {} for periodic task “{}”.",
            task.definition.task, task.definition.name
        )),
    ))
}

async fn delete(
    mounted: web::Data<Mounted>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AdminError> {
    let id = id.into_inner();
    let name = match with_store(&mounted, move |store| store.load_one(id)).await? {
        Some(Ok(task)) => task.definition.name,
        Some(Err(bad)) => bad.name,
        None => {
            return Err(AdminError::NotFound(format!(
                "There is no periodic task {id}."
            )))
        }
    };
    let deleted = name.clone();
    with_store(&mounted, move |store| store.delete(&deleted)).await?;
    tracing::info!(%name, id, "admin deleted a periodic task");
    Ok(redirect(
        &mounted.url("/periodic-tasks"),
        Some(&format!("Deleted periodic task “{name}”.")),
    ))
}
