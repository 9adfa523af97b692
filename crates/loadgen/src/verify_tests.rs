use super::*;

fn pop() -> Population {
    Population {
        users: 3,
        items: 4,
        orders: 4,
        item_price: 1,
        stock: 10,
        credit: 100,
    }
}

fn order(items: &[(&str, i64)], user: &str, paid: bool) -> Option<Order> {
    Some(Order {
        paid,
        items: items.iter().map(|&(i, q)| (i.to_owned(), q)).collect(),
        user_id: user.to_owned(),
        total_cost: items.iter().map(|(_, q)| q).sum(),
    })
}

fn item(stock: i64) -> Option<Item> {
    Some(Item { stock, price: 1 })
}

fn user(credit: i64) -> Option<User> {
    Some(User { credit })
}

/// Orders 0 and 1 paid (order 1 holds item 1 twice), 2 refused, 3 never checked out.
fn consistent() -> (State, Answers) {
    let state = State {
        orders: vec![
            order(&[("0", 1), ("1", 1)], "0", true),
            order(&[("1", 1), ("1", 1)], "1", true),
            order(&[("2", 1), ("3", 1)], "0", false),
            order(&[("3", 1), ("0", 1)], "2", false),
        ],
        items: vec![item(9), item(7), item(10), item(10)],
        users: vec![user(98), user(98), user(100)],
    };
    let answers = Answers {
        paid: vec![0, 1],
        refused: vec![2],
        ..Answers::default()
    };
    (state, answers)
}

fn kinds(v: &Verdict) -> Vec<(&str, u64)> {
    v.kinds.iter().map(|(k, n)| (k.as_str(), *n)).collect()
}

/// Asserts that `state` and `answers` break the rules exactly once, in the way `kind` names.
fn assert_one_violation(state: &State, answers: &Answers, kind: &str) {
    let v = check(&pop(), state, Some(answers));
    assert_eq!(kinds(&v), vec![(kind, 1)], "{:?}", v.examples);
}

/// The consistent state with order `order` marked paid or not, and the books changed to go
/// with it: `items` get the given stock, `users` the given credit.
fn rebooked(
    order: usize,
    paid: bool,
    items: &[(usize, i64)],
    users: &[(usize, i64)],
) -> (State, Answers) {
    let (mut state, answers) = consistent();
    state.orders[order].as_mut().unwrap().paid = paid;
    for &(i, stock) in items {
        state.items[i] = item(stock);
    }
    for &(u, credit) in users {
        state.users[u] = user(credit);
    }
    (state, answers)
}

#[test]
fn consistent_state_has_no_violation() {
    let (state, answers) = consistent();
    let v = check(&pop(), &state, Some(&answers));
    assert!(v.consistent(), "{:?}", v.examples);
    assert_eq!(v.paid_orders, 2);
    assert_eq!(v.stock_sold, 4);
    assert_eq!(v.credit_charged, 4);
}

#[test]
fn lost_or_double_stock_is_caught() {
    let (mut state, answers) = consistent();
    state.items[1] = item(8);
    state.items[2] = item(9);
    let v = check(&pop(), &state, Some(&answers));
    assert_eq!(kinds(&v), vec![("stock_mismatch", 2)]);
    assert!(v.examples[0].contains("item 1: 2 taken from stock, 3 sold"));
}

#[test]
fn credit_mismatch_is_caught() {
    let (mut state, answers) = consistent();
    state.users[0] = user(96);
    assert_one_violation(&state, &answers, "credit_mismatch");
}

#[test]
fn negative_values_are_caught() {
    let (mut state, answers) = consistent();
    let p = Population { stock: -1, ..pop() };
    state.items = vec![item(-2), item(-4), item(-1), item(-1)];
    let v = check(&p, &state, Some(&answers));
    assert_eq!(kinds(&v), vec![("negative_stock", 4)]);
}

#[test]
fn answers_must_match_paid_flags() {
    // Acknowledged but unpaid, with the stock and credit given back: only the lie remains.
    let (state, answers) = rebooked(0, false, &[(0, 10), (1, 8)], &[(0, 100)]);
    assert_one_violation(&state, &answers, "acknowledged_but_not_paid");
    // Refused but paid, with consistent accounting.
    let (state, answers) = rebooked(2, true, &[(2, 9), (3, 9)], &[(0, 96)]);
    assert_one_violation(&state, &answers, "refused_but_paid");
    // Without answers only conservation is judged, and it holds.
    assert!(check(&pop(), &state, None).consistent());
}

#[test]
fn paid_without_any_checkout_is_caught() {
    let (state, answers) = rebooked(3, true, &[(3, 9), (0, 8)], &[(2, 98)]);
    assert_one_violation(&state, &answers, "paid_without_checkout");
    // An unknown answer (5xx or timeout) allows either outcome.
    let answers = Answers {
        unknown: vec![3],
        ..answers
    };
    assert!(check(&pop(), &state, Some(&answers)).consistent());
}

#[test]
fn refused_after_paid_is_a_violation() {
    let (state, mut answers) = consistent();
    answers.refused_after_paid = vec![1];
    assert_one_violation(&state, &answers, "refused_after_paid");
}

#[test]
fn unreadable_and_dangling_ids_are_caught() {
    let (mut state, answers) = consistent();
    state.users[2] = None;
    state.orders[1] = order(&[("1", 1), ("77", 1)], "x", true);
    // Order 1 now only takes one unit of item 1.
    state.items[1] = item(8);
    let v = check(&pop(), &state, Some(&answers));
    assert_eq!(
        kinds(&v),
        vec![
            ("credit_mismatch", 1),
            ("unknown_item_in_order", 1),
            ("unknown_user_in_order", 1),
            ("user_unreadable", 1),
        ]
    );
}

#[test]
fn examples_are_capped() {
    let p = Population {
        items: 100,
        orders: 0,
        users: 0,
        ..pop()
    };
    let state = State {
        items: vec![item(0); 100],
        ..State::default()
    };
    let v = check(&p, &state, None);
    assert_eq!(v.violations, 100);
    assert_eq!(v.examples.len(), EXAMPLES);
}
