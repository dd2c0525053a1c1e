//! The typed statuses and outcomes as SQLite values: their names, as TEXT. The one place this
//! backend maps them.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::store::{Circuit, DeliveryStatus, EventStatus, Outcome};

macro_rules! as_text {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                <$t>::parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown {} {text:?}", stringify!($t)).into()))
            }
        }
    )*};
}

as_text!(Circuit, DeliveryStatus, EventStatus, Outcome);
