"""Reports (报告): 日报告表, 周报, 月报, 季通报, 专报 and 零报告, from the data, in DOCX, PDF, HTML
and XLSX (docs/reports.md)."""

from tingfeng.reports.common import FORMATS, KINDS

__all__ = ["FORMATS", "KINDS"]
