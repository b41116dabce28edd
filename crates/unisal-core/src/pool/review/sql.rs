//! The review list's SQL. The list is read in "arms": the rows that have the sort key (predictions of the
//! round, or labels) in an order SQLite takes from an index, then the rows without it in id order. Each
//! statement joins only the tables its filters and order need, so an unfiltered count is an index count.
//! The last arm of a sort with a key is the complement of the first: its count is the count of all
//! matching patches less the first arm's, which saves an anti-join over the whole pool.

use super::rows::NO_ROUND;
use super::{ReviewQuery, ReviewSort};
use crate::error::{Result, SqlContext};
use crate::pool::{LabelFilter, PatchId};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

/// The table an arm is driven from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// Every patch (`p`), in id order.
    Patches,
    /// The round's predictions (`pr`).
    Predictions,
    /// The labeled patches (`l`).
    Labels,
}

impl Base {
    /// The column holding the patch id.
    fn id(self) -> &'static str {
        match self {
            Base::Patches => "p.id",
            Base::Predictions => "pr.patch_id",
            Base::Labels => "l.patch_id",
        }
    }
}

/// One statement of the list.
struct Arm {
    base: Base,
    /// Its own condition beyond the query's filters.
    cond: Option<&'static str>,
    /// Counted as all matching patches less the arms before it.
    complement: bool,
    /// ORDER BY, without the direction of each term (`{dir}` is replaced).
    order: &'static str,
}

/// The arms of a query, in list order.
fn arms(q: &ReviewQuery) -> Vec<Arm> {
    let rest = |cond| Arm { base: Base::Patches, cond: Some(cond), complement: true, order: "p.id {dir}" };
    let by_prediction = |order| {
        let mut arms = vec![Arm { base: Base::Predictions, cond: None, complement: false, order }];
        // Rows without a prediction can match only when no filter needs one.
        if !q.filters_on_prediction() {
            arms.push(rest("pr.patch_id IS NULL"));
        }
        arms
    };
    match q.sort {
        ReviewSort::Id => {
            vec![Arm { base: Base::Patches, cond: None, complement: false, order: "p.id {dir}" }]
        }
        ReviewSort::Disagreement => by_prediction("pr.disagreement {dir}, pr.patch_id {dir}"),
        ReviewSort::Confidence => by_prediction("pr.confidence {dir}, pr.patch_id {dir}"),
        ReviewSort::Predicted => by_prediction("pr.pred {dir}, pr.patch_id {dir}"),
        ReviewSort::Label => {
            let mut arms = Vec::new();
            if q.label != LabelFilter::Unlabeled {
                arms.push(Arm {
                    base: Base::Labels,
                    cond: None,
                    complement: false,
                    order: "c.position {dir}, l.patch_id {dir}",
                });
            }
            if matches!(q.label, LabelFilter::Any | LabelFilter::Unlabeled) {
                arms.push(rest("l.class_id IS NULL"));
            }
            arms
        }
    }
}

/// A statement being written: its text and its parameters, numbered in order.
struct Statement {
    sql: String,
    values: Vec<Value>,
}

impl Statement {
    /// Append `text`, where each `#` is the next parameter taken from `values`.
    fn push(&mut self, text: &str, values: impl IntoIterator<Item = Value>) {
        let mut values = values.into_iter();
        for (i, part) in text.split('#').enumerate() {
            if i > 0 {
                self.values.push(values.next().expect("one value per placeholder"));
                self.sql.push_str(&format!("?{}", self.values.len()));
            }
            self.sql.push_str(part);
        }
    }
}

/// `SELECT {what} FROM ... WHERE ...` of `base` under the query's filters and `cond`, joining labels,
/// predictions and classes only where a filter, `cond` or `order` uses them.
fn select(
    what: &str,
    base: Base,
    cond: Option<&str>,
    order: &str,
    q: &ReviewQuery,
    round: i64,
    predicted_index: Option<Option<i64>>,
) -> Statement {
    let mut conds: Vec<(String, Vec<Value>)> = Vec::new();
    match q.label {
        LabelFilter::Any => {}
        LabelFilter::Labeled => conds.push(("l.class_id IS NOT NULL".into(), vec![])),
        LabelFilter::Unlabeled => conds.push(("l.class_id IS NULL".into(), vec![])),
        LabelFilter::Class(c) => conds.push(("l.class_id = #".into(), vec![Value::Integer(c)])),
    }
    match predicted_index {
        None => {}
        Some(Some(i)) => conds.push(("pr.pred = #".into(), vec![Value::Integer(i)])),
        Some(None) => conds.push(("0".into(), vec![])),
    }
    if let Some(v) = q.disagreement_min {
        conds.push(("pr.disagreement >= #".into(), vec![Value::Real(v)]));
    }
    if let Some(v) = q.disagreement_max {
        conds.push(("pr.disagreement <= #".into(), vec![Value::Real(v)]));
    }
    if q.networks_disagree {
        conds.push(("pr.pred_a <> pr.pred_b".into(), vec![]));
    }
    let id = base.id();
    if q.unsure_only {
        conds.push((
            format!("EXISTS (SELECT 1 FROM flags f WHERE f.patch_id = {id} AND f.unsure = 1)"),
            vec![],
        ));
    }
    if let Some(r) = q.queried_in {
        let sql = format!("EXISTS (SELECT 1 FROM queries q WHERE q.round_id = # AND q.patch_id = {id})");
        conds.push((sql, vec![Value::Integer(r)]));
    }
    if let Some(c) = cond {
        conds.push((c.to_string(), vec![]));
    }
    let uses = |alias: &str| conds.iter().any(|(c, _)| mentions(c, alias)) || mentions(order, alias);
    let mut s = Statement { sql: String::new(), values: Vec::new() };
    let round_value = || vec![Value::Integer(round)];
    match base {
        Base::Patches => {
            s.push(&format!("SELECT {what} FROM patches p"), []);
            if uses("l") {
                s.push(" LEFT JOIN labels l ON l.patch_id = p.id", []);
            }
            if uses("pr") {
                s.push(" LEFT JOIN predictions pr ON pr.round_id = # AND pr.patch_id = p.id", round_value());
            }
        }
        Base::Predictions => {
            s.push(&format!("SELECT {what} FROM predictions pr"), []);
            if uses("l") {
                s.push(" LEFT JOIN labels l ON l.patch_id = pr.patch_id", []);
            }
            conds.insert(0, ("pr.round_id = #".into(), round_value()));
        }
        Base::Labels => {
            s.push(&format!("SELECT {what} FROM labels l"), []);
            if uses("c") {
                s.push(" JOIN classes c ON c.id = l.class_id", []);
            }
            if uses("pr") {
                s.push(
                    " LEFT JOIN predictions pr ON pr.round_id = # AND pr.patch_id = l.patch_id",
                    round_value(),
                );
            }
        }
    }
    for (i, (c, values)) in conds.into_iter().enumerate() {
        s.push(if i == 0 { " WHERE " } else { " AND " }, []);
        s.push(&c, values);
    }
    s
}

/// Whether `sql` uses table alias `alias` (`alias.` not preceded by a letter, digit or underscore).
fn mentions(sql: &str, alias: &str) -> bool {
    let dotted = format!("{alias}.");
    sql.match_indices(&dotted)
        .any(|(at, _)| !sql[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_'))
}

fn count(conn: &Connection, s: Statement) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(&s.sql)
        .ctx("counting the review list")?
        .query_row(params_from_iter(s.values), |r| r.get(0))
        .ctx("counting the review list")?;
    Ok(n as u64)
}

/// The ids of the page `offset..offset + limit` of the list, and the number of rows matching in all.
/// `predicted_index` is the index of the filtered class in the round (`Some(None)`: not one of its classes).
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
    let dir = if q.descending { "DESC" } else { "ASC" };
    let mut ids: Vec<PatchId> = Vec::new();
    let mut skip = offset;
    let mut total = 0u64;
    for arm in arms(q) {
        let n = if arm.complement {
            let all = select("count(*)", Base::Patches, None, "", q, round, predicted_index);
            count(conn, all)?.saturating_sub(total)
        } else {
            count(conn, select("count(*)", arm.base, arm.cond, "", q, round, predicted_index))?
        };
        total += n;
        if ids.len() as u64 >= limit {
            continue;
        }
        if skip >= n {
            skip -= n;
            continue;
        }
        let order = arm.order.replace("{dir}", dir);
        let mut s = select(arm.base.id(), arm.base, arm.cond, &order, q, round, predicted_index);
        let page = [Value::Integer((limit - ids.len() as u64) as i64), Value::Integer(skip as i64)];
        s.push(&format!(" ORDER BY {order} LIMIT # OFFSET #"), page);
        skip = 0;
        let mut stmt = conn.prepare_cached(&s.sql).ctx("listing the review page")?;
        let rows = stmt.query_map(params_from_iter(s.values), |r| r.get(0)).ctx("listing the review page")?;
        for id in rows {
            ids.push(id.ctx("listing the review page")?);
        }
    }
    Ok((ids, total))
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn aliases_are_recognised_as_whole_words() {
        assert!(mentions("l.class_id IS NULL", "l"));
        assert!(mentions("EXISTS (SELECT 1 FROM flags f WHERE f.patch_id = l.patch_id)", "l"));
        assert!(!mentions("pr.pred_a <> pr.pred_b", "l"));
        assert!(!mentions("pr.confidence ASC, pr.patch_id ASC", "c"));
        assert!(mentions("c.position DESC", "c"));
        assert!(!mentions("", "pr"));
    }
}
