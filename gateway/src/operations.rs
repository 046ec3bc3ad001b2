//! FHIR operations (R4 operations.html), independent of the HTTP framework like [`crate::rest`]:
//! `$validate`, the terminology operations `$lookup` and `$validate-code`, the routine
//! vaccination schedule (`Patient/{id}/$immunization-schedule`), the 予診票 assessment
//! (`QuestionnaireResponse/$assess`) and the vaccine barcode reader (`Immunization/$from-barcode`).
//! docs/operations.md describes each one's parameters and answers.
//!
//! The operations that answer from stored patient data decide it first (`disclosure::Exit`):
//! for a caller acting for an organisation, a record its consents withhold counts as not stored,
//! and the decisions are audited (docs/consent.md, "Other exits").

use serde_json::{Value, json};
use store::{Precondition, StoredVersion, Write, WriteAction};

use crate::disclosure::{Event, Exit};
use crate::domain::{Pending, live_resource, parse_stored, search_all_versions};
use crate::error::{ApiError, ErrorKind, IssueDetail, issue_detail, operation_outcome};
use crate::format::bytes_body::Body;
use crate::rest::{Ctx, Reply, check_type};

/// One input parameter, from the query string or a `Parameters` body.
#[derive(Debug, Clone)]
enum ParamValue {
    /// Any primitive `value[x]`, or a query-string value.
    Text(String),
    /// `valueCoding`.
    Coding(Value),
    /// `resource`.
    Resource(Value),
}

/// The inputs of one operation call.
#[derive(Debug, Default)]
pub struct OpInput {
    params: Vec<(String, ParamValue)>,
}

impl OpInput {
    pub fn from_query(pairs: &[(String, String)]) -> OpInput {
        OpInput {
            params: pairs
                .iter()
                .filter(|(k, _)| k != "_format" && k != "_pretty")
                .map(|(k, v)| (k.clone(), ParamValue::Text(v.clone())))
                .collect(),
        }
    }

    /// Add the parameters of a `Parameters` resource (R4 parameters.html).
    pub fn add_parameters(&mut self, parameters: &Value) -> Result<(), ApiError> {
        let list = match parameters.get("parameter") {
            None => return Ok(()),
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(
                    ApiError::bad_request("Parameters.parameter must be an array")
                        .at("Parameters.parameter"),
                );
            }
        };
        for (i, parameter) in list.iter().enumerate() {
            let name = parameter
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::bad_request("every parameter needs a name")
                        .at(format!("Parameters.parameter[{i}].name"))
                })?;
            let value = if let Some(resource) = parameter.get("resource") {
                ParamValue::Resource(resource.clone())
            } else if let Some(coding) = parameter.get("valueCoding") {
                ParamValue::Coding(coding.clone())
            } else {
                let primitive = parameter
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
                    .map(|(_, v)| v);
                match primitive {
                    Some(Value::String(text)) => ParamValue::Text(text.clone()),
                    Some(v @ (Value::Bool(_) | Value::Number(_))) => {
                        ParamValue::Text(v.to_string())
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "parameter {name:?} has no value this operation can use"
                        ))
                        .at(format!("Parameters.parameter[{i}]")));
                    }
                }
            };
            self.params.push((name.to_owned(), value));
        }
        Ok(())
    }

    /// A POST body: a `Parameters` resource, or (where the operation allows) the resource itself
    /// as its `resource_name` parameter.
    pub fn add_body(&mut self, body: Value, resource_name: Option<&str>) -> Result<(), ApiError> {
        match body.get("resourceType").and_then(Value::as_str) {
            Some("Parameters") => self.add_parameters(&body),
            Some(_) if resource_name.is_some() => {
                self.params.push((
                    resource_name.unwrap_or_default().to_owned(),
                    ParamValue::Resource(body),
                ));
                Ok(())
            }
            _ => Err(ApiError::bad_request(
                "this operation takes a Parameters resource in the body",
            )),
        }
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.params.iter().find_map(|(k, v)| match v {
            ParamValue::Text(t) if k == name => Some(t.as_str()),
            _ => None,
        })
    }

    fn coding(&self, name: &str) -> Option<&Value> {
        self.params.iter().find_map(|(k, v)| match v {
            ParamValue::Coding(c) if k == name => Some(c),
            _ => None,
        })
    }

    fn resource(&self, name: &str) -> Option<&Value> {
        self.params.iter().find_map(|(k, v)| match v {
            ParamValue::Resource(r) if k == name => Some(r),
            _ => None,
        })
    }

    /// (system, code, display) from `system`/`code`/`display` or a `coding`.
    fn code_triple(&self) -> (Option<String>, Option<String>, Option<String>) {
        let from_coding = |field: &str| {
            self.coding("coding")
                .and_then(|c| c.get(field))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        (
            self.text("system")
                .map(str::to_owned)
                .or_else(|| from_coding("system")),
            self.text("code")
                .map(str::to_owned)
                .or_else(|| from_coding("code")),
            self.text("display")
                .map(str::to_owned)
                .or_else(|| from_coding("display")),
        )
    }
}

fn ok_json(value: Value) -> Reply {
    Reply {
        status: 200,
        body: Body::Json(value),
        location: None,
        etag: None,
        last_modified_ms: None,
        issues: Vec::new(),
    }
}

fn required<'a>(value: Option<&'a str>, name: &str, operation: &str) -> Result<&'a str, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("{operation} needs the parameter {name:?}")))
}

/// `$validate` (R4 operation-resource-validate): every issue the write path would find
/// (structure, claimed and requested profiles, the enforced default profile, routine-vaccination
/// rules, 予診票 answers), as an OperationOutcome; 200 whether or not the resource is valid.
/// The routine-vaccination rules read the patient's stored doses: for a consent-checked caller
/// only those it may see, so no issue echoes a withheld dose.
pub async fn validate(
    ctx: &Ctx<'_>,
    url_type: Option<&str>,
    input: &OpInput,
) -> Result<Reply, ApiError> {
    if let Some(rt) = url_type {
        check_type(ctx.state, rt)?;
    }
    match input.text("mode") {
        None | Some("create") | Some("update") => {}
        Some("delete") => {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "mode=delete is not supported: deletes have no content rules here",
            ));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode must be create, update or delete, got {other:?}"
            )));
        }
    }
    let resource = input.resource("resource").ok_or_else(|| {
        ApiError::bad_request("$validate needs the resource, as the body or a `resource` parameter")
    })?;
    let body_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request("the resource has no resourceType").at("resourceType")
        })?;
    if let Some(rt) = url_type
        && rt != body_type
    {
        return Err(ApiError::bad_request(format!(
            "the resource is a {body_type} but the operation was called on {rt}"
        ))
        .at("resourceType"));
    }
    let mut profiles = Vec::new();
    if let Some(profile) = input.text("profile") {
        if ctx.state.domain.profiles.get(profile).is_none() {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "the profile {profile:?} is not known here (see GET /fhir/StructureDefinition)"
                ),
            ));
        }
        profiles.push(profile);
    }
    // The checks read stored records (earlier doses of the same patient), so the resource must
    // be one the caller could write.
    ctx.access
        .permit_operation(ctx.state, "$validate", body_type)?
        .require_write(resource)?;
    let mut exit = Exit::open(ctx)?;
    let undisclosed = match mappers::immunization::patient_id(resource) {
        Some(patient_id) if body_type == "Immunization" && exit.is_checked() => {
            undisclosed_history(ctx, &mut exit, patient_id)?
        }
        _ => Vec::new(),
    };
    let issues = crate::rest::resource_issues(
        ctx,
        body_type,
        resource,
        "",
        &profiles,
        &Pending::from_writes(&undisclosed),
    )?;
    exit.close(Event::Rest("operation")).await?;
    let details: Vec<IssueDetail> = if issues.is_empty() {
        vec![IssueDetail {
            severity: "information",
            code: "informational",
            diagnostics: "no issues found".into(),
            expression: None,
        }]
    } else {
        issues.iter().map(issue_detail).collect()
    };
    Ok(ok_json(operation_outcome(&details, None)))
}

fn terminology_error(error: terminology::TerminologyError) -> ApiError {
    ApiError::new(ErrorKind::NotFound, error.to_string())
}

/// `CodeSystem/$lookup` (R4 codesystem-operation-lookup).
pub fn lookup(ctx: &Ctx<'_>, input: &OpInput) -> Result<Reply, ApiError> {
    ctx.access
        .permit_operation(ctx.state, "$lookup", "CodeSystem")?;
    let (system, code, _) = input.code_triple();
    let system = required(system.as_deref(), "system", "$lookup")?;
    let code = required(code.as_deref(), "code", "$lookup")?;
    let lookup = ctx
        .state
        .domain
        .terminology
        .lookup(system, code)
        .map_err(terminology_error)?;
    Ok(ok_json(terminology::lookup_parameters(&lookup)))
}

/// `ValueSet/$validate-code` and `CodeSystem/$validate-code` (R4 valueset-operation-validate-code,
/// codesystem-operation-validate-code). On a CodeSystem, `url` names the code system.
pub fn validate_code(
    ctx: &Ctx<'_>,
    on_code_system: bool,
    input: &OpInput,
) -> Result<Reply, ApiError> {
    ctx.access.permit_operation(
        ctx.state,
        "$validate-code",
        if on_code_system {
            "CodeSystem"
        } else {
            "ValueSet"
        },
    )?;
    let (system, code, display) = input.code_triple();
    let code = required(code.as_deref(), "code", "$validate-code")?;
    let url = input.text("url");
    let (value_set, system) = if on_code_system {
        (None, url.map(str::to_owned).or(system))
    } else {
        (
            Some(required(url, "url", "ValueSet/$validate-code")?),
            system,
        )
    };
    let validation = ctx
        .state
        .domain
        .terminology
        .validate_code(&terminology::ValidateCode {
            value_set,
            system: system.as_deref(),
            code,
            display: display.as_deref(),
        })
        .map_err(terminology_error)?;
    Ok(ok_json(terminology::validate_code_parameters(&validation)))
}

/// Today in Japan: schedules and ages follow the Japanese calendar day.
pub fn today_in_japan() -> time::Date {
    let offset = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::now_utc().to_offset(offset).date()
}

/// `Patient/{id}/$immunization-schedule`: the routine vaccination schedule of a patient as an
/// ImmunizationRecommendation, from their birth date and the Immunizations stored here.
/// Parameters: `date` (as-of day, default today in Japan), `municipality` (6-digit code whose
/// overrides apply, default from the home address).
pub async fn immunization_schedule(
    ctx: &Ctx<'_>,
    patient_id: &str,
    input: &OpInput,
) -> Result<Reply, ApiError> {
    check_type(ctx.state, "Patient")?;
    // The schedule shows the patient and their doses: both must be readable.
    let grant = ctx
        .access
        .permit_operation(ctx.state, "$immunization-schedule", "Patient")?;
    ctx.access
        .permit(ctx.state, auth::Interaction::Read, "Immunization")?;
    if let Some(patient) = live_resource(ctx.state.store.as_ref(), "Patient", patient_id)? {
        grant.require(&patient, || format!("Patient/{patient_id} does not exist"))?;
    }
    let domain = &ctx.state.domain;
    let store = ctx.state.store.as_ref();
    let as_of = match input.text("date") {
        Some(text) => mappers::immunization::full_date(text)
            .filter(|_| text.len() == 10)
            .ok_or_else(|| {
                ApiError::bad_request(format!("date must be a day (YYYY-MM-DD), got {text:?}"))
            })?,
        None => today_in_japan(),
    };
    if let Some(code) = input.text("municipality") {
        identifiers::MunicipalityCode::parse(code)
            .map_err(|e| ApiError::bad_request(format!("municipality: {e}")))?;
    }
    let absent = || ApiError::not_found(format!("Patient/{patient_id} is not on this server"));
    let patient = live_resource(store, "Patient", patient_id)?.ok_or_else(absent)?;
    // A withheld Patient answers as one never stored; withheld doses are left out of the
    // history, so the schedule shows only what the caller may see.
    let mut exit = Exit::open(ctx)?;
    let undisclosed = if exit.is_checked() {
        undisclosed_history(ctx, &mut exit, patient_id)?
    } else {
        Vec::new()
    };
    exit.close(Event::Rest("operation")).await?;
    let pending = Pending::from_writes(&undisclosed);
    if pending.hides("Patient", patient_id) {
        return Err(absent());
    }
    let person =
        mappers::immunization::person(&patient, input.text("municipality")).map_err(|e| {
            ApiError::new(ErrorKind::Unprocessable, e.to_string()).at("Patient.birthDate")
        })?;
    let history = domain.dose_history(store, &pending, patient_id)?;
    let schedule = vaccination::schedule(&domain.rules, &person, &history, as_of);
    let target_diseases = |vaccine: &str| {
        domain
            .terminology
            .target_diseases_of(vaccine)
            .iter()
            .map(|coding| serde_json::to_value(coding).unwrap_or(Value::Null))
            .collect::<Vec<Value>>()
    };
    let supporting = |item: &vaccination::ScheduleItem| {
        let given = item.given?;
        history
            .iter()
            .find(|d| d.vaccine == item.vaccine && d.date == given)
            .and_then(|d| d.id.as_ref())
            .map(|id| format!("Immunization/{id}"))
    };
    let recommendation = mappers::immunization::recommendation(
        &schedule,
        &format!("Patient/{patient_id}"),
        as_of,
        &target_diseases,
        &supporting,
    );
    if recommendation.get("recommendation").is_none() {
        return Err(ApiError::new(
            ErrorKind::Unprocessable,
            "no routine vaccination rule applies to this patient",
        ));
    }
    Ok(ok_json(recommendation))
}

/// The patient's stored records an operation draws on (the Patient and their Immunizations)
/// that the caller may not see whole, as deletions: handed to the checks as pending writes, they
/// make the store look as if those records were never there. Each decision is noted on `exit`.
fn undisclosed_history(
    ctx: &Ctx<'_>,
    exit: &mut Exit<'_, '_>,
    patient_id: &str,
) -> Result<Vec<Write>, ApiError> {
    let store = ctx.state.store.as_ref();
    let patient = store
        .read("Patient", patient_id)?
        .filter(|v| !v.is_deleted());
    let doses = search_all_versions(
        store,
        "Immunization",
        "patient",
        &format!("Patient/{patient_id}"),
    )?;
    let mut hidden = Vec::new();
    for version in patient.iter().chain(&doses) {
        if !exit.permits(version)? {
            hidden.push(deletion_of(version));
        }
    }
    Ok(hidden)
}

fn deletion_of(version: &StoredVersion) -> Write {
    Write {
        resource_type: version.resource_type.clone(),
        id: version.id.clone(),
        precondition: Precondition::None,
        action: WriteAction::Delete,
    }
}

/// The Questionnaire a response answers: a built-in 予診票 form, or one stored here.
fn questionnaire_for(ctx: &Ctx<'_>, response: &Value) -> Result<Value, ApiError> {
    let canonical = response
        .get("questionnaire")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unprocessable,
                "the QuestionnaireResponse does not name its questionnaire",
            )
            .at("QuestionnaireResponse.questionnaire")
        })?;
    if let Some(form) = ctx.state.domain.forms.questionnaire(canonical) {
        return Ok(form.clone());
    }
    stored_questionnaire(ctx, canonical)?.ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unprocessable,
            format!("the questionnaire {canonical:?} is not known here"),
        )
        .at("QuestionnaireResponse.questionnaire")
    })
}

/// A Questionnaire stored here whose `url` (and `version`, when given as `url|version`) match.
pub fn stored_questionnaire(ctx: &Ctx<'_>, canonical: &str) -> Result<Option<Value>, ApiError> {
    if !ctx.state.serves("Questionnaire") {
        return Ok(None);
    }
    let (url, version) = canonical.split_once('|').unwrap_or((canonical, ""));
    let mut criteria = vec![("url".to_owned(), url.to_owned())];
    if !version.is_empty() {
        criteria.push(("version".to_owned(), version.to_owned()));
    }
    let query = search::parse_query(search::Registry::r4(), "Questionnaire", &criteria, true)?;
    let page = ctx.state.store.search(&store::SearchRequest {
        resource_type: "Questionnaire",
        query: &query,
        offset: 0,
        count: 1,
        need_total: false,
    })?;
    page.matches.first().map(parse_stored).transpose()
}

/// Validation issues of a QuestionnaireResponse against its Questionnaire, when that is known
/// (a response to an unknown questionnaire is stored as it is).
pub fn questionnaire_response_issues(
    ctx: &Ctx<'_>,
    response: &Value,
) -> Result<Vec<fhir::validate::Issue>, ApiError> {
    let Some(canonical) = response.get("questionnaire").and_then(Value::as_str) else {
        return Ok(Vec::new());
    };
    let questionnaire = match ctx.state.domain.forms.questionnaire(canonical) {
        Some(form) => Some(form.clone()),
        None => stored_questionnaire(ctx, canonical)?,
    };
    Ok(questionnaire
        .map(|q| prevaccination::validate_response(&q, response))
        .unwrap_or_default())
}

/// `QuestionnaireResponse/$assess` (and `QuestionnaireResponse/{id}/$assess`): the 予診票
/// eligibility rule — body temperature ≥ 37.5 ℃ or any contraindication answer means not
/// eligible today — with the reasons, and the response's validation issues if any.
pub fn assess(ctx: &Ctx<'_>, response: &Value) -> Result<Reply, ApiError> {
    if response.get("resourceType").and_then(Value::as_str) != Some("QuestionnaireResponse") {
        return Err(
            ApiError::bad_request("$assess takes a QuestionnaireResponse").at("resourceType"),
        );
    }
    ctx.access
        .permit_operation(ctx.state, "$assess", "QuestionnaireResponse")?
        .require_write(response)?;
    let questionnaire = questionnaire_for(ctx, response)?;
    let issues = prevaccination::validate_response(&questionnaire, response);
    let assessment = prevaccination::assess(&questionnaire, response);
    let mut parameters = prevaccination::assessment_parameters(&assessment);
    if !issues.is_empty()
        && let Some(list) = parameters
            .get_mut("parameter")
            .and_then(Value::as_array_mut)
    {
        let details: Vec<IssueDetail> = issues.iter().map(issue_detail).collect();
        list.push(json!({"name": "issues", "resource": operation_outcome(&details, None)}));
    }
    Ok(ok_json(parameters))
}

/// `QuestionnaireResponse/{id}/$assess` on a stored response; a response the caller's consents
/// withhold answers 404, as one never stored.
pub async fn assess_stored(ctx: &Ctx<'_>, id: &str) -> Result<Reply, ApiError> {
    check_type(ctx.state, "QuestionnaireResponse")?;
    let absent = || format!("QuestionnaireResponse/{id} is not on this server");
    let stored = ctx
        .state
        .store
        .read("QuestionnaireResponse", id)?
        .filter(|v| !v.is_deleted())
        .ok_or_else(|| ApiError::not_found(absent()))?;
    let response = parse_stored(&stored)?;
    ctx.access
        .permit_operation(ctx.state, "$assess", "QuestionnaireResponse")?
        .require(&response, absent)?;
    let mut exit = Exit::open(ctx)?;
    let permitted = exit.permits(&stored)?;
    exit.close(Event::Rest("operation")).await?;
    if !permitted {
        return Err(ApiError::not_found(absent()));
    }
    assess(ctx, &response)
}

/// `Immunization/$from-barcode`: a GS1 element string from a vaccine package (GTIN, expiry,
/// lot) read into the Immunization fields it fills.
pub fn from_barcode(ctx: &Ctx<'_>, input: &OpInput) -> Result<Reply, ApiError> {
    ctx.access
        .permit_operation(ctx.state, "$from-barcode", "Immunization")?;
    let barcode = required(input.text("barcode"), "barcode", "$from-barcode")?;
    let data = identifiers::gs1::parse(barcode)
        .map_err(|e| ApiError::new(ErrorKind::Unprocessable, format!("barcode: {e}")))?;
    let fields = identifiers::immunization_fields(&data, &ctx.state.domain.products);
    Ok(ok_json(fields.to_parameters()))
}
