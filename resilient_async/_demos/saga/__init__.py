"""The saga demo: orders that reserve stock, charge a card and ship, undone when they fail.

Each order is one `Transaction` of three steps against a small shop (stock, payments and
shipments kept in a SQLite file, so that another process sees them too). After each step
succeeds, its compensation is registered: release the stock, refund the charge, cancel the
shipment. Each order meets one fate, shuffled by the seed: every step works; the card is
declined; the carrier is down (the booking is retried, then given up); the customer cancels
while it ships; shipping hangs past the checkout deadline; the first refund attempt fails
(the compensation is retried); the bank rejects the refund (`CompensationError`: a human
must look). Then a second process is killed in the middle of an order, and `recover` finishes
its rollback from the durable journal (an `SQLiteJournal`).

Every step and every compensation prints one line as it happens; the run ends with a table
per order and a check of the shop's books: every unit not shipped is back on the shelf, and
the only money kept is that of the shipped orders (and of a refund the bank rejected, flagged).

Modules, top-down: `scenario` (the orders, the crash, the run), `saga` (one order as a
Transaction, narrated), `crash` (the process killed midway), `compensations` (the undos,
registered by name), `shop` (the orders and the shop's books in SQLite), `report` (the
introduction and the final table).
"""
