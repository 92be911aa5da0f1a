//! The per-sphere stats table: one row per sphere, sortable by any column.

use super::palette::busy_colour;
use cllm_train::events::{SphereState, SphereStats};
use eframe::egui;
use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Id,
    Parent,
    Sequences,
    AvgLoss,
    GradNorm,
    Busy,
    State,
}

impl Column {
    pub const ALL: [Column; 7] = [
        Column::Id,
        Column::Parent,
        Column::Sequences,
        Column::AvgLoss,
        Column::GradNorm,
        Column::Busy,
        Column::State,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "Sphere",
            Column::Parent => "Parent",
            Column::Sequences => "Sequences",
            Column::AvgLoss => "Avg loss",
            Column::GradNorm => "Grad norm",
            Column::Busy => "Busy %",
            Column::State => "State",
        }
    }
}

/// Which column the table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortOrder {
    pub column: Column,
    pub ascending: bool,
}

impl Default for SortOrder {
    fn default() -> Self {
        SortOrder {
            column: Column::Id,
            ascending: true,
        }
    }
}

impl SortOrder {
    /// Clicking the current column flips direction; another column sorts
    /// ascending by it.
    pub fn click(&mut self, column: Column) {
        if self.column == column {
            self.ascending = !self.ascending;
        } else {
            *self = SortOrder {
                column,
                ascending: true,
            };
        }
    }
}

fn compare(a: &SphereStats, b: &SphereStats, column: Column) -> Ordering {
    // total_cmp keeps NaN losses in a fixed place instead of panicking.
    match column {
        Column::Id => a.id.cmp(&b.id),
        Column::Parent => a.parent.cmp(&b.parent),
        Column::Sequences => a.sequences.cmp(&b.sequences),
        Column::AvgLoss => a.avg_loss.total_cmp(&b.avg_loss),
        Column::GradNorm => a.grad_norm.total_cmp(&b.grad_norm),
        Column::Busy => a.busy.total_cmp(&b.busy),
        Column::State => {
            SphereState::name(a.state).cmp(cllm_train::events::SphereState::name(b.state))
        }
    }
}

/// Indices of `rows` in display order; ties fall back to sphere id.
pub fn sorted_indices(rows: &[SphereStats], order: SortOrder) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    idx.sort_by(|&i, &j| {
        let o = compare(&rows[i], &rows[j], order.column);
        let o = if order.ascending { o } else { o.reverse() };
        o.then(rows[i].id.cmp(&rows[j].id))
    });
    idx
}

pub fn stats_table_ui(ui: &mut egui::Ui, rows: &[SphereStats], order: &mut SortOrder) {
    if rows.is_empty() {
        ui.weak("Sphere statistics appear here once training starts.");
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("stats_table")
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new("stats_grid")
                .striped(true)
                .num_columns(Column::ALL.len())
                .min_col_width(48.0)
                .show(ui, |ui| {
                    for c in Column::ALL {
                        let arrow = match (order.column == c, order.ascending) {
                            (true, true) => " ^",
                            (true, false) => " v",
                            _ => "",
                        };
                        if ui
                            .add(
                                egui::Button::new(
                                    egui::RichText::new(format!("{}{arrow}", c.title())).strong(),
                                )
                                .frame(false),
                            )
                            .on_hover_text("Sort by this column")
                            .clicked()
                        {
                            order.click(c);
                        }
                    }
                    ui.end_row();
                    for i in sorted_indices(rows, *order) {
                        let r = &rows[i];
                        ui.label(format!("#{}", r.id));
                        ui.label(r.parent.map_or("root".to_string(), |p| format!("#{p}")));
                        ui.label(r.sequences.to_string());
                        ui.label(format!("{:.4}", r.avg_loss));
                        ui.label(format!("{:.3}", r.grad_norm));
                        ui.label(format!("{:.0}", r.busy * 100.0));
                        let colour = busy_colour(r.busy);
                        ui.colored_label(colour, SphereState::name(r.state));
                        ui.end_row();
                    }
                });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sphere(id: usize, sequences: u64, loss: f32) -> SphereStats {
        SphereStats {
            id,
            parent: cllm_train::spheres::parent_of(id),
            level: cllm_train::spheres::level_of(id),
            sequences,
            avg_loss: loss,
            last_loss: loss,
            grad_norm: 1.0,
            busy: 0.5,
            state: SphereState::Computing,
        }
    }

    #[test]
    fn sorting_by_columns_and_direction() {
        let rows = vec![sphere(0, 5, 2.0), sphere(1, 9, f32::NAN), sphere(2, 5, 1.0)];
        let mut order = SortOrder::default();
        assert_eq!(sorted_indices(&rows, order), vec![0, 1, 2]);
        order.click(Column::Sequences);
        assert_eq!(sorted_indices(&rows, order), vec![0, 2, 1], "ties by id");
        order.click(Column::Sequences);
        assert!(!order.ascending);
        assert_eq!(sorted_indices(&rows, order)[0], 1);
        order.click(Column::AvgLoss);
        assert_eq!(
            sorted_indices(&rows, order),
            vec![2, 0, 1],
            "NaN sorts last"
        );
    }
}
