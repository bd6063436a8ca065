/* signals.c - graceful shutdown and configuration reload with signal events.

   Shows:
     - signal events: evloop catches the signal and runs your callback from the
       loop, like any other event, so the callback may call any function
       (printf, malloc, evloop_*), unlike a raw signal handler;
     - SIGINT/SIGTERM: stop after the current round (evloop_exit with no
       delay), then free everything and exit 0;
     - SIGHUP: the traditional "reload your configuration"; keeps running.
   Signal events are persistent, so they also keep evloop_dispatch running
   until one of them asks it to stop.

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/signals.c -o signals
   Run:    ./signals                 prints "pid N ready"
   Try:    kill -HUP N               -> "got SIGHUP, reloading configuration"
           kill -TERM N  (or Ctrl-C) -> "got SIGTERM, shutting down", exit status 0 */

/* evloop.h first: it also turns on the POSIX declarations (sigaction,
   clock_gettime, ...) that a strict -std=c99 hides from the headers below. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

struct app {
    evloop *loop;
    evloop_event sigint_event;
    evloop_event sigterm_event;
    evloop_event sighup_event;
};

/* fd is the signal number for signal events. */
static void on_shutdown(evloop_socket_t signum, short what, void *arg)
{
    struct app *app = arg;

    (void)what;
    printf("got %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    /* Not exit(): let the callbacks already queued for this round run, then
       return from evloop_dispatch so main can clean up. */
    evloop_exit(app->loop, NULL);
}

static void on_reload(evloop_socket_t signum, short what, void *arg)
{
    (void)signum;
    (void)what;
    (void)arg;
    printf("got SIGHUP, reloading configuration\n");
    /* A real program would re-read its configuration file here. */
}

static int add_signal(struct app *app, evloop_event *ev, int signum, evloop_event_cb cb)
{
    if (evloop_signal_assign(ev, app->loop, signum, cb, app) < 0 ||
        evloop_signal_add(ev, NULL) < 0) {
        fprintf(stderr, "signals: cannot watch signal %d: %s\n", signum, strerror(errno));
        return -1;
    }
    return 0;
}

/* Deleting the last event for a signal restores the handler that was there
   before (here the default one). Skip events that setup never assigned. */
static void remove_signal(evloop_event *ev)
{
    if (evloop_event_initialized(ev)) evloop_signal_del(ev);
}

int main(void)
{
    struct app app;
    int status = 0;

    /* Line-buffered even into a pipe, so whoever waits for our lines sees them. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&app, 0, sizeof app);
    app.loop = evloop_new();
    if (!app.loop) {
        perror("signals: evloop_new");
        return 1;
    }
    if (add_signal(&app, &app.sigint_event, SIGINT, on_shutdown) < 0 ||
        add_signal(&app, &app.sigterm_event, SIGTERM, on_shutdown) < 0 ||
        add_signal(&app, &app.sighup_event, SIGHUP, on_reload) < 0) {
        status = 1;
    } else {
        /* Only now are the signals ours: announce readiness after adding them. */
        printf("pid %ld ready\n", (long)getpid());
        if (evloop_dispatch(app.loop) < 0) {
            perror("signals: evloop_dispatch");
            status = 1;
        }
    }
    remove_signal(&app.sigint_event);
    remove_signal(&app.sigterm_event);
    remove_signal(&app.sighup_event);
    evloop_free(app.loop);
    return status;
}
