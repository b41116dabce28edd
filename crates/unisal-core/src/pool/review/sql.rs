//! The review list's SQL: the rows are listed in "arms" (those with the sort key, then those without it),
//! each a query that SQLite can order by an index and stop early. Every arm is counted for the total;
//! only the arms the page overlaps are read, and only their page of ids.

use super::rows::NO_ROUND;
use super::{ReviewQuery, ReviewSort};
use crate::error::{Result, SqlContext};
use crate::pool::{LabelFilter, PatchId};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

/// Patches with their label and this round's prediction (`?1` is the round): rows in id order.
const ALL_PATCHES: &str = "FROM patches p
    LEFT JOIN labels l ON l.patch_id = p.id
    LEFT JOIN predictions pr ON pr.round_id = ?1 AND pr.patch_id = p.id";

/// The round's predictions with their patches' labels.
const PREDICTED: &str = "FROM predictions pr LEFT JOIN labels l ON l.patch_id = pr.patch_id";

/// Labeled patches with their class and this round's prediction.
const LABELED: &str = "FROM labels l
    JOIN classes c ON c.id = l.class_id
    LEFT JOIN predictions pr ON pr.round_id = ?1 AND pr.patch_id = l.patch_id";

/// One query of the list: FROM clause, the id column, its own condition, and its order.
struct Arm {
    from: &'static str,
    id: &'static str,
    cond: Option<&'static str>,
    order: String,
}

/// The arms of a query, in list order.
fn arms(q: &ReviewQuery) -> Vec<Arm> {
    let dir = if q.descending { "DESC" } else { "ASC" };
    let by_id = |cond: Option<&'static str>| Arm {
        from: ALL_PATCHES,
        id: "p.id",
        cond,
        order: format!("p.id {dir}"),
    };
    let by_prediction = |column: &str| {
        let mut arms = vec![Arm {
            from: PREDICTED,
            id: "pr.patch_id",
            cond: Some("pr.round_id = ?1"),
            order: format!("pr.{column} {dir}, pr.patch_id {dir}"),
        }];
        // Rows without a prediction can match only when no filter needs one.
        if !q.filters_on_prediction() {
            arms.push(by_id(Some("pr.patch_id IS NULL")));
        }
        arms
    };
    match q.sort {
        ReviewSort::Id => vec![by_id(None)],
        ReviewSort::Disagreement => by_prediction("disagreement"),
        ReviewSort::Confidence => by_prediction("confidence"),
        ReviewSort::Predicted => by_prediction("pred"),
        ReviewSort::Label => {
            let mut arms = Vec::new();
            if q.label != LabelFilter::Unlabeled {
                arms.push(Arm {
                    from: LABELED,
                    id: "l.patch_id",
                    cond: None,
                    order: format!("c.position {dir}, l.patch_id {dir}"),
                });
            }
            if matches!(q.label, LabelFilter::Any | LabelFilter::Unlabeled) {
                arms.push(by_id(Some("l.class_id IS NULL")));
            }
            arms
        }
    }
}

/// The WHERE clause of `arm` under the query's filters, and its parameters (`?1` is the round).
/// `predicted_index` is the index of the filtered class in the round (`Some(None)`: not one of its classes).
fn where_clause(
    arm: &Arm,
    q: &ReviewQuery,
    round: i64,
    predicted_index: Option<Option<i64>>,
) -> (String, Vec<Value>) {
    let mut values = vec![Value::Integer(round)];
    let mut conds: Vec<String> = arm.cond.iter().map(|c| c.to_string()).collect();
    let mut bind = |conds: &mut Vec<String>, template: &str, v: Value| {
        values.push(v);
        conds.push(template.replace('#', &format!("?{}", values.len())));
    };
    match q.label {
        LabelFilter::Any => {}
        LabelFilter::Labeled => conds.push("l.class_id IS NOT NULL".into()),
        LabelFilter::Unlabeled => conds.push("l.class_id IS NULL".into()),
        LabelFilter::Class(c) => bind(&mut conds, "l.class_id = #", Value::Integer(c)),
    }
    match predicted_index {
        None => {}
        Some(Some(i)) => bind(&mut conds, "pr.pred = #", Value::Integer(i)),
        Some(None) => conds.push("0".into()),
    }
    if let Some(v) = q.disagreement_min {
        bind(&mut conds, "pr.disagreement >= #", Value::Real(v));
    }
    if let Some(v) = q.disagreement_max {
        bind(&mut conds, "pr.disagreement <= #", Value::Real(v));
    }
    if q.networks_disagree {
        conds.push("pr.pred_a <> pr.pred_b".into());
    }
    if q.unsure_only {
        conds.push(format!("EXISTS (SELECT 1 FROM flags f WHERE f.patch_id = {} AND f.unsure = 1)", arm.id));
    }
    if let Some(r) = q.queried_in {
        let template =
            format!("EXISTS (SELECT 1 FROM queries q WHERE q.round_id = # AND q.patch_id = {})", arm.id);
        bind(&mut conds, &template, Value::Integer(r));
    }
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    (clause, values)
}

/// The ids of the page `offset..offset + limit` of the list, and the number of rows matching in all.
pub(super) fn page_ids(
    conn: &Connection,
    q: &ReviewQuery,
    round: Option<i64>,
    predicted_index: Option<Option<i64>>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<PatchId>, u64)> {
    let round = round.unwrap_or(NO_ROUND);
    let limit = limit.min(i64::MAX as u64);
    let mut ids: Vec<PatchId> = Vec::new();
    let mut skip = offset;
    let mut total = 0u64;
    for arm in arms(q) {
        let (clause, values) = where_clause(&arm, q, round, predicted_index);
        let count: i64 = conn
            .prepare_cached(&format!("SELECT count(*) {} {clause}", arm.from))
            .ctx("counting the review list")?
            .query_row(params_from_iter(values.iter()), |r| r.get(0))
            .ctx("counting the review list")?;
        let count = count as u64;
        total += count;
        if (ids.len() as u64) >= limit {
            continue;
        }
        if skip >= count {
            skip -= count;
            continue;
        }
        let n = values.len();
        let sql = format!(
            "SELECT {} {} {clause} ORDER BY {} LIMIT ?{} OFFSET ?{}",
            arm.id,
            arm.from,
            arm.order,
            n + 1,
            n + 2
        );
        let mut values = values;
        values.push(Value::Integer((limit - ids.len() as u64) as i64));
        values.push(Value::Integer(skip as i64));
        skip = 0;
        let mut stmt = conn.prepare_cached(&sql).ctx("listing the review page")?;
        let rows = stmt.query_map(params_from_iter(values), |r| r.get(0)).ctx("listing the review page")?;
        for id in rows {
            ids.push(id.ctx("listing the review page")?);
        }
    }
    Ok((ids, total))
}
