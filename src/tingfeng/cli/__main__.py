from tingfeng.cli.main import app

app(prog_name="tingfeng")
