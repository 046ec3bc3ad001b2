#!/usr/bin/env python3
"""Write a synthetic musubi-vaccination file: ROWS rows, five routine doses per resident.

    gen_municipal_csv.py ROWS OUT.csv [utf-8|cp932]

Every row is valid for the musubi-vaccination layout (docs/municipal.md): the header of the
shipped layout, resident numbers 0000001…, real vaccine-type codes, the Luhn-valid
medical-institution code 0110113719 and dates that exist. Names are built from a few kanji and
kana so CP932 can encode them.
"""
import sys

HEADER = ("宛名番号,氏名,氏名カナ,性別,生年月日,郵便番号,住所,個人番号,接種日,ワクチン種類,"
          "医薬品コード,接種回数,ロット番号,接種医師名,医療機関コード,医療機関名,接種地自治体コード,登録日時")
FAMILY = [("山田", "ヤマダ"), ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ")]
GIVEN = [("花子", "ハナコ"), ("太郎", "タロウ"), ("結衣", "ユイ"), ("蓮", "レン"), ("陽菜", "ヒナ")]
# (vaccine type, dose number, days after birth)
DOSES = [("dpt-ipv-hib", 1, 62), ("pcv", 1, 62), ("hepb", 1, 62), ("dpt-ipv-hib", 2, 90), ("bcg", 1, 160)]


def day(serial):
    """Days since 2020-01-01 → YYYYMMDD (proleptic Gregorian)."""
    import datetime
    return (datetime.date(2020, 1, 1) + datetime.timedelta(days=serial)).strftime("%Y%m%d")


def main():
    rows, out = int(sys.argv[1]), sys.argv[2]
    encoding = sys.argv[3] if len(sys.argv) > 3 else "utf-8"
    with open(out, "w", encoding="cp932" if encoding == "cp932" else "utf-8", newline="") as f:
        f.write(HEADER + "\n")
        for i in range(rows):
            person, dose = divmod(i, len(DOSES))
            family, family_kana = FAMILY[person % len(FAMILY)]
            given, given_kana = GIVEN[(person // len(FAMILY)) % len(GIVEN)]
            birth = person % 1500
            vaccine, number, after = DOSES[dose]
            f.write(
                f"{person + 1:07d},{family}　{given},{family_kana}　{given_kana},{1 + person % 2},"
                f"{day(birth)},102-8688,東京都千代田区九段南1-2-1,,{day(birth + after)},{vaccine},,"
                f"{number},LOT{person % 997:04d},佐藤　一郎,0110113719,こどもクリニック,131016,\n"
            )


if __name__ == "__main__":
    main()
