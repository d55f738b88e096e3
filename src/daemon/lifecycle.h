/* The lifecycle timer: stops idle sandboxes, deletes those past their timeout or stopped for longer than
 * delete_after_stop_seconds, and forgets old tombstones. One loop timer armed for the earliest deadline
 * of any sandbox; every change that can bring a deadline closer calls lifecycle_reschedule. */
#pragma once

struct daemon;

void lifecycle_start(struct daemon *d);
void lifecycle_stop(struct daemon *d);
/* Re-arms the timer for the earliest deadline (cheap: one pass over the registry). No-op before
 * lifecycle_start. */
void lifecycle_reschedule(struct daemon *d);
