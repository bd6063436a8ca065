/* Links two EVLOOP_STATIC copies (tu_static.c built twice) and runs both. */
int static_a(void);
int static_b(void);

int main(void)
{
    return static_a() || static_b();
}
