-- The swap takes the predictions table from its readers ({tables}: ONLY the parent, and the day's old
-- partition) in short tries, inside the swap's transaction. While a lock request waits, every later
-- reader queues behind it, so each try waits {try_ms} ms at most (a failed try is this block's
-- subtransaction, rolled back; the swap's transaction goes on), then the swap leaves the queue for a
-- pause ({first_s} s, doubling up to {longest_s} s, jittered to 50-100 %), for up to {patience_s} s
-- in all. It says how it went in two settings of the transaction: scoring.swap_locked (yes/no) and
-- scoring.swap_tries; the lock timeout of the rest of the swap is {rest_ms} ms again after it.
DO $$
DECLARE tries integer := 0; began timestamptz := clock_timestamp();
BEGIN
  PERFORM set_config('scoring.swap_locked', 'no', true);
  LOOP
    tries := tries + 1;
    BEGIN
      PERFORM set_config('lock_timeout', '{try_ms}ms', true);
      LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE;
      PERFORM set_config('scoring.swap_locked', 'yes', true);
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      NULL;
    END;
    EXIT WHEN extract(epoch FROM clock_timestamp() - began) >= {patience_s};
    PERFORM pg_sleep(least({longest_s}, {first_s} * power(2, tries - 1)) * (0.5 + random() / 2));
  END LOOP;
  PERFORM set_config('scoring.swap_tries', tries::text, true);
  PERFORM set_config('lock_timeout', '{rest_ms}ms', true);
END $$;
